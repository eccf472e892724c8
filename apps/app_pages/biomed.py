"""Explorer page: the biomed domain's embeddings (search, neighbours, map, detail)."""

from apps.domain_page import render_domain_page

render_domain_page("biomed")
