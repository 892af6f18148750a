"""dicomflow: a multi-tenant DICOM archive on Kafka, PostgreSQL and Redis."""
