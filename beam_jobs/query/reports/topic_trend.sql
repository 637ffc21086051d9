-- topic_trend: which topics rise and fall, as the tag share per digest date.
-- Answers: of the distinct papers listed on each digest date, which share carried each tag.
-- Empty when the run used --no_embeddings (no tags). Records without a digest date are left out.
-- Columns:
--   digest_date  the digest date
--   tag          the tag (topics and paper types)
--   papers       distinct papers listed that day with the tag
--   share        papers / distinct papers listed that day (multi-label: shares add up to > 1)
WITH listed AS (
    SELECT DISTINCT digest_date, cluster_id, tags
    FROM records
    WHERE tags IS NOT NULL AND digest_date IS NOT NULL
),
per_day AS (SELECT digest_date, count(*) AS day_papers FROM listed GROUP BY digest_date),
tagged AS (SELECT digest_date, unnest(tags) AS tag FROM listed)
SELECT t.digest_date, t.tag, count(*) AS papers, round(count(*) / any_value(d.day_papers), 4) AS share
FROM tagged t
JOIN per_day d USING (digest_date)
GROUP BY t.digest_date, t.tag
ORDER BY t.digest_date, papers DESC, t.tag;
