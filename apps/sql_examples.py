"""The SQL page's example queries: each runs as shown on the store ``make demo`` fills.

They read the views and the domains' sample tables by their real names and pick their own query sample
(the first one of a modality), so no id or dimension has to be edited before running them.
``tests/apps/test_explorer.py`` runs every one on the demo store.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SqlExample:
    """A titled example query."""

    title: str
    sql: str


EXAMPLES: tuple[SqlExample, ...] = (
    SqlExample(
        "What is in the store: vectors per domain, modality, model and dimension",
        """SELECT domain, modality, model_name, model_version, dim, num_vectors, num_runs, last_written
FROM embedding_inventory
ORDER BY domain, modality, model_name, model_version""",
    ),
    SqlExample(
        "Astro: the five stars nearest to one star by photometry (exact cosine, same model only)",
        """WITH query AS (
    SELECT sample_id, model_name, model_version, vec FROM all_embeddings
    WHERE domain = 'astro' AND modality = 'photometry'
    ORDER BY sample_id LIMIT 1
)
SELECT q.sample_id AS query_star, e.sample_id, s.label,
       list_cosine_similarity(e.vec, q.vec) AS score
FROM all_embeddings AS e
JOIN query AS q ON e.model_name = q.model_name AND e.model_version = q.model_version
LEFT JOIN samples_astro AS s ON s.sample_id = e.sample_id
WHERE e.domain = 'astro' AND e.modality = 'photometry' AND e.sample_id <> q.sample_id
ORDER BY score DESC
LIMIT 5""",
    ),
    SqlExample(
        "Astro: stars per split and class",
        """SELECT split, label, count(*) AS num_stars
FROM samples_astro
GROUP BY split, label
ORDER BY split, label""",
    ),
    SqlExample(
        "Astro: the ten stars whose photometry and spectrum embeddings agree least",
        """SELECT p.sample_id, s.label, list_cosine_similarity(p.vec, x.vec) AS alignment
FROM all_embeddings AS p
JOIN all_embeddings AS x
  ON x.sample_id = p.sample_id AND x.model_name = p.model_name AND x.model_version = p.model_version
LEFT JOIN samples_astro AS s ON s.sample_id = p.sample_id
WHERE p.domain = 'astro' AND p.modality = 'photometry' AND x.modality = 'spectra'
ORDER BY alignment ASC
LIMIT 10""",
    ),
    SqlExample(
        "Astro: the most unusual stars (isolation-forest anomaly score)",
        """SELECT sample_id, label, split, anomaly_isolation_forest, anomaly_lof, label_error_candidate
FROM samples_astro
ORDER BY anomaly_isolation_forest DESC
LIMIT 20""",
    ),
    SqlExample(
        "News: posts per label with the detector's mean fake probability",
        """SELECT label, split, count(*) AS num_posts, round(avg(prob_fake), 3) AS mean_prob_fake,
       round(avg(clip_similarity), 3) AS mean_clip_similarity
FROM samples_news
GROUP BY label, split
ORDER BY label, split""",
    ),
    SqlExample(
        "Biomed: image–caption pairs per concept and image set",
        """SELECT concept, image_set, count(*) AS num_pairs, any_value(caption) AS example_caption
FROM samples_biomed
GROUP BY concept, image_set
ORDER BY num_pairs DESC""",
    ),
    SqlExample(
        "Recsys: items and users with vectors, per model",
        """SELECT e.modality, e.model_name, e.model_version, count(*) AS num_vectors,
       any_value(s.title) AS example_title
FROM all_embeddings AS e
LEFT JOIN samples_recsys AS s ON s.sample_id = e.sample_id
WHERE e.domain = 'recsys'
GROUP BY ALL
ORDER BY e.model_name, e.modality""",
    ),
    SqlExample(
        "Provenance: the run, checkpoint and commit behind every model's vectors",
        """SELECT a.domain, a.model_name, a.model_version, a.dim, r.run_id, r.checkpoint_sha256, r.git_sha,
       count(*) AS num_vectors
FROM all_embeddings AS a
JOIN runs AS r USING (run_id)
GROUP BY ALL
ORDER BY a.domain, a.model_name, a.model_version, r.run_id""",
    ),
)
