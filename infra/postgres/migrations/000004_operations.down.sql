DROP TABLE access_log_urns;
DROP TABLE access_log;
DROP FUNCTION access_log_append_only();
DROP TABLE operator_actions;
DROP TABLE refusals;
DROP TABLE dead_letters;
