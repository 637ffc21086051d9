-- repeats: the papers that keep coming back.
-- Answers: which papers were listed on the most digest days, and which stayed around the
-- longest (first to last digest date). Only papers listed more than once; the 25 most
-- repeated, by days seen, then span, then appearances.
-- Columns:
--   title        canonical title of the paper
--   appearances  records of the paper (every listing: the canonical, exact and near copies)
--   days_seen    distinct digest dates it was listed on
--   first_seen   earliest digest date
--   last_seen    latest digest date
--   span_days    days from first to last listing, both included (last_seen - first_seen + 1)
--   cluster_id   the paper's id (record_id of its canonical record)
SELECT p.title,
       p.cluster_size AS appearances,
       count(DISTINCT r.digest_date) AS days_seen,
       p.first_seen,
       p.last_seen,
       p.last_seen - p.first_seen + 1 AS span_days,
       p.cluster_id
FROM papers p
JOIN records r USING (cluster_id)
GROUP BY p.title, p.cluster_size, p.first_seen, p.last_seen, p.cluster_id
HAVING p.cluster_size > 1
ORDER BY days_seen DESC, span_days DESC NULLS LAST, appearances DESC, p.title, p.cluster_id
LIMIT 25;
