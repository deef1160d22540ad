-- World knowledge for prompts, chunked and embedded; searched by full text and
-- by similarity. Written rarely (on load and reload), so it can carry HNSW.
CREATE TABLE lore_documents (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    world_id     bigint      NOT NULL REFERENCES worlds (id) ON DELETE CASCADE,
    -- the file's path under assets/lore/
    path         text        NOT NULL CHECK (length(path) BETWEEN 1 AND 500),
    title        text        NOT NULL DEFAULT '',
    content_hash bytea       NOT NULL CHECK (length(content_hash) = 32),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT lore_documents_world_id_path_key UNIQUE (world_id, path),
    CONSTRAINT lore_documents_world_id_id_key UNIQUE (world_id, id)
);

CREATE TABLE lore_chunks (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    world_id      bigint   NOT NULL,
    document_id   bigint   NOT NULL,
    ordinal       integer  NOT NULL CHECK (ordinal >= 0),
    text          text     NOT NULL CHECK (length(text) BETWEEN 1 AND 16000),
    tsv           tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED,
    embedding     vector,
    embedding_dim integer,
    CONSTRAINT lore_chunks_document_ordinal_key UNIQUE (document_id, ordinal),
    CONSTRAINT lore_chunks_embedding_dim_check CHECK (
        (embedding IS NULL AND embedding_dim IS NULL)
        OR (embedding IS NOT NULL AND vector_dims(embedding) = embedding_dim)),
    FOREIGN KEY (world_id, document_id) REFERENCES lore_documents (world_id, id) ON DELETE CASCADE,
    CONSTRAINT lore_chunks_world_embedding_dim_fkey FOREIGN KEY (world_id, embedding_dim)
        REFERENCES worlds (id, embedding_dim) ON DELETE CASCADE
);
CREATE INDEX lore_chunks_tsv_idx ON lore_chunks USING gin (tsv);
CREATE INDEX lore_chunks_world_idx ON lore_chunks (world_id);
CREATE INDEX lore_chunks_hnsw_384 ON lore_chunks
    USING hnsw ((embedding::vector(384)) vector_cosine_ops) WITH (m = 16, ef_construction = 64)
    WHERE embedding_dim = 384;
