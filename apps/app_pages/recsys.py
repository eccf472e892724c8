"""Explorer page: the recsys domain's embeddings (search, neighbours, map, detail)."""

from apps.domain_page import render_domain_page

render_domain_page("recsys")
