DROP TABLE event_log;
DROP TABLE sim_metrics;
DROP TABLE llm_calls;
