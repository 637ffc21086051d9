-- topics: what the corpus is about, tag by tag.
-- Answers: how many distinct papers carry each tag (zero-shot topics, then the rule-based
-- paper types survey / benchmark / has-code), and how often they were listed. Empty when the
-- run used --no_embeddings (no tags).
-- Columns:
--   tag          the tag
--   kind         topic | paper_type
--   papers       distinct papers (canonical records) with the tag
--   share        papers / all tagged papers (a paper has one or more tags: shares add up to > 1)
--   appearances  records of those papers (every listing, copies included)
SELECT tag,
       CASE WHEN tag IN ('survey', 'benchmark', 'has-code') THEN 'paper_type' ELSE 'topic' END AS kind,
       count(*) AS papers,
       round(count(*) / (SELECT count(*) FROM papers WHERE tags IS NOT NULL), 4) AS share,
       sum(cluster_size) AS appearances
FROM (SELECT unnest(tags) AS tag, cluster_size FROM papers WHERE tags IS NOT NULL)
GROUP BY tag
ORDER BY kind DESC, papers DESC, tag;
