-- changes_topics: which topics this update brings more or less of than the weeks before.
-- Answers: for each tag, its share of the distinct papers listed in this update (every
-- paper with a new record: new papers, new versions, re-listings) against its share of the
-- papers listed in the 28 days before the update's earliest digest date (records the
-- earlier snapshot already held); rising topics first, falling last. Empty when the run used
-- --no_embeddings (no tags). The earlier snapshot is the view previous_records (see changes_new).
-- Columns:
--   tag            the tag
--   kind           topic | paper_type (survey, benchmark, has-code)
--   papers_now     papers listed in this update with the tag
--   share_now      papers_now / tagged papers listed in this update (multi-label: shares add up to > 1)
--   papers_before  papers listed in the 28 days before with the tag
--   share_before   papers_before / tagged papers listed in those days; NULL when there were none
--   change         share_now - share_before
--   trend          rising | falling | steady; NULL when there is nothing before to compare with
WITH added AS (  -- the records of this update
    SELECT r.*
    FROM records r
    ANTI JOIN previous_records o USING (record_id)
),
window_start AS (SELECT min(digest_date) AS day FROM added),
now_papers AS (
    SELECT DISTINCT p.cluster_id, p.tags
    FROM added a
    JOIN papers p USING (cluster_id)
    WHERE p.tags IS NOT NULL
),
before_papers AS (
    SELECT DISTINCT p.cluster_id, p.tags
    FROM records r
    SEMI JOIN previous_records o USING (record_id)
    JOIN papers p USING (cluster_id)
    CROSS JOIN window_start w
    WHERE p.tags IS NOT NULL AND r.digest_date >= w.day - 28 AND r.digest_date < w.day
),
now_tags AS (SELECT tag, count(*) AS papers FROM (SELECT unnest(tags) AS tag FROM now_papers) GROUP BY tag),
before_tags AS (
    SELECT tag, count(*) AS papers FROM (SELECT unnest(tags) AS tag FROM before_papers) GROUP BY tag
),
shares AS (
    SELECT tag,
           coalesce(n.papers, 0) AS papers_now,
           coalesce(n.papers, 0) / nullif((SELECT count(*) FROM now_papers), 0) AS share_now,
           coalesce(b.papers, 0) AS papers_before,
           coalesce(b.papers, 0) / nullif((SELECT count(*) FROM before_papers), 0) AS share_before
    FROM now_tags n
    FULL JOIN before_tags b USING (tag)
)
SELECT tag,
       CASE WHEN tag IN ('survey', 'benchmark', 'has-code') THEN 'paper_type' ELSE 'topic' END AS kind,
       papers_now,
       round(share_now, 4) AS share_now,
       papers_before,
       round(share_before, 4) AS share_before,
       round(share_now - share_before, 4) AS change,
       CASE
           WHEN share_before IS NULL THEN NULL
           WHEN share_now > share_before THEN 'rising'
           WHEN share_now < share_before THEN 'falling'
           ELSE 'steady'
       END AS trend
FROM shares
ORDER BY change DESC NULLS LAST, share_now DESC, tag;
