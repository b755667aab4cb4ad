-- Views derived from `images`, which mmdata.catalog rebuilds from the committed shard
-- list. Re-run after every commit, one statement per view (comments are stripped first).

CREATE OR REPLACE VIEW captions AS
SELECT corpus, image_id, source, split, c.caption_id, c.text, c.scene_graph
FROM (SELECT corpus, image_id, source, split, unnest(captions) AS c FROM images);

CREATE OR REPLACE VIEW gold_objects AS
SELECT corpus, image_id, source, split, object_index - 1 AS object_index,
       o.object_id, o.category_id, o.names, o.names[1] AS name, o.box_xywh_px, o.area_px,
       o.iscrowd, o.attributes, o.synsets
FROM (SELECT corpus, image_id, source, split, unnest(gold.objects) AS o,
             generate_subscripts(gold.objects, 1) AS object_index
      FROM images);

CREATE OR REPLACE VIEW gold_relations AS
SELECT corpus, image_id, source, split, r.relation_id,
       r.subject AS subject_index, objects[r.subject + 1].names[1] AS subject,
       r.predicate,
       r.object AS object_index, objects[r.object + 1].names[1] AS object,
       r.synsets
FROM (SELECT corpus, image_id, source, split, gold.objects AS objects,
             unnest(gold.relations) AS r
      FROM images);

CREATE OR REPLACE VIEW region_captions AS
SELECT corpus, image_id, source, split, g.region_id, g.text, g.box_xywh_px
FROM (SELECT corpus, image_id, source, split, unnest(gold.regions) AS g FROM images);

-- Caption scene graphs (the scene_graph stage): one row per object, attribute, relation.
-- object_index is 0-based, as in the struct; spans index the caption text.
CREATE OR REPLACE VIEW scene_graph_objects AS
SELECT corpus, image_id, caption_id, object_index - 1 AS object_index,
       o.head, o.lemma, o.text, o.count, o.span.start AS span_start, o.span."end" AS span_end
FROM (SELECT corpus, image_id, caption_id, unnest(scene_graph.objects) AS o,
             generate_subscripts(scene_graph.objects, 1) AS object_index
      FROM captions);

CREATE OR REPLACE VIEW scene_graph_attributes AS
SELECT corpus, image_id, caption_id, object_index, head, a.text AS attribute,
       a.lemma, a.span.start AS span_start, a.span."end" AS span_end
FROM (SELECT corpus, image_id, caption_id, object_index, head, unnest(o_attributes) AS a
      FROM (SELECT corpus, image_id, caption_id, object_index - 1 AS object_index,
                   o.head AS head, o.attributes AS o_attributes
            FROM (SELECT corpus, image_id, caption_id, unnest(scene_graph.objects) AS o,
                         generate_subscripts(scene_graph.objects, 1) AS object_index
                  FROM captions)));

CREATE OR REPLACE VIEW scene_graph_relations AS
SELECT corpus, image_id, caption_id,
       r.subject AS subject_index, objects[r.subject + 1].head AS subject_head,
       r.predicate, r.predicate_lemma,
       r.object AS object_index, objects[r.object + 1].head AS object_head,
       r.span.start AS span_start, r.span."end" AS span_end
FROM (SELECT corpus, image_id, caption_id, scene_graph.objects AS objects,
             unnest(scene_graph.relations) AS r
      FROM captions);
