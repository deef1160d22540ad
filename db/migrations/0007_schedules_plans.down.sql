DROP TABLE agent_plans;
DROP TABLE agent_schedules;
