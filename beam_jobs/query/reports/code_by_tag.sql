-- code_by_tag: how often papers come with code, per tag.
-- Answers: the share of papers whose abstract links to code or a project page, overall (first
-- row, also without embeddings) and per tag, and how many papers got a link only in a later
-- version (a copy links code, the canonical does not).
-- Columns:
--   tag                '(all papers)' for the total, else the tag (the has-code tag itself is left out)
--   papers             distinct papers (canonical records)
--   with_code          papers whose canonical abstract has a link (code_urls not empty)
--   code_share         with_code / papers
--   with_code_any      papers where any listing (canonical or copy) has a link
--   code_only_in_copy  with_code_any - with_code: the link appeared in a later version
WITH paper AS (
    SELECT p.cluster_id,
           p.tags,
           len(p.code_urls) > 0 AS has_code,
           bool_or(len(r.code_urls) > 0) AS any_code
    FROM papers p
    JOIN records r USING (cluster_id)
    GROUP BY p.cluster_id, p.tags, p.code_urls
),
per_tag AS (
    SELECT 0 AS ord, '(all papers)' AS tag, has_code, any_code FROM paper
    UNION ALL
    SELECT 1, unnest(tags), has_code, any_code FROM paper WHERE tags IS NOT NULL
)
SELECT tag,
       count(*) AS papers,
       count(*) FILTER (WHERE has_code) AS with_code,
       round(count(*) FILTER (WHERE has_code) / count(*), 4) AS code_share,
       count(*) FILTER (WHERE any_code) AS with_code_any,
       count(*) FILTER (WHERE any_code AND NOT has_code) AS code_only_in_copy
FROM per_tag
WHERE tag <> 'has-code'
GROUP BY ord, tag
ORDER BY ord, code_share DESC, papers DESC, tag;
