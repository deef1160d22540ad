DROP TABLE lore_chunks;
DROP TABLE lore_documents;
