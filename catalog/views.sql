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

-- Detector regions (the regions stage): one row per image, and one per box. Boxes are in
-- original-image pixels; cls/attr are Caffe-style indices (0 = background / none).
CREATE OR REPLACE VIEW regions AS
SELECT corpus, image_id, regions.extractor_id AS extractor, regions.num_boxes AS num_boxes,
       regions.image_width_px AS image_w, regions.image_height_px AS image_h,
       regions.boxes_given AS given_boxes, regions.feature_dim AS feature_dim
FROM images
WHERE regions IS NOT NULL;

CREATE OR REPLACE VIEW region_boxes AS
SELECT corpus, image_id, extractor, box_index - 1 AS box_index,
       r.boxes_xyxy_px[box_index][1] AS x1, r.boxes_xyxy_px[box_index][2] AS y1,
       r.boxes_xyxy_px[box_index][3] AS x2, r.boxes_xyxy_px[box_index][4] AS y2,
       r.object_ids[box_index] AS cls, r.tags[box_index] AS cls_name,
       r.object_conf[box_index] AS cls_conf,
       r.attribute_ids[box_index] AS attr, r.attribute_names[box_index] AS attr_name,
       r.attribute_conf[box_index] AS attr_conf
FROM (SELECT corpus, image_id, regions.extractor_id AS extractor, regions AS r,
             generate_subscripts(regions.boxes_xyxy_px, 1) AS box_index
      FROM images
      WHERE regions IS NOT NULL);
