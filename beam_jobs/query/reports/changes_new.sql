-- changes_new: papers that are new in this update.
-- Answers: which papers (clusters) of the current version have no record in the snapshot
-- compared against, with their tags and code links; oldest listing first. The earlier
-- snapshot is the view previous_records: `digestflow report DIR changes [--since VERSION]`
-- (or `report DIR changes_new`) makes it over the previous version, or VERSION; after a
-- first run it is empty and every paper is new.
-- Columns:
--   title       canonical title of the paper
--   tags        its tags: topics, then survey / benchmark / has-code (NULL with --no_embeddings)
--   code_urls   code/project links in the canonical record's abstract
--   listings    records of the paper (every one of them new in this update)
--   first_seen  earliest digest date it was listed on
--   cluster_id  the paper's id (record_id of its canonical record)
SELECT p.title,
       p.tags,
       p.code_urls,
       p.cluster_size AS listings,
       p.first_seen,
       p.cluster_id
FROM papers p
WHERE NOT EXISTS (
    SELECT 1
    FROM records r
    JOIN previous_records o USING (record_id)
    WHERE r.cluster_id = p.cluster_id
)
ORDER BY p.first_seen NULLS LAST, p.title, p.cluster_id;
