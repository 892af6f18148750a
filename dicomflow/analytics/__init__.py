"""The analytics sink: the topics' facts written into MySQL-protocol tables (Doris, MariaDB).

`dicomflow analytics-sink` runs its own Faust app (consumer group `dicomflow-analytics`);
`dicomflow analytics init` creates the tables; `dicomflow analytics query NAME` runs one of
the analyst queries in `sql/analytics/`.
"""
