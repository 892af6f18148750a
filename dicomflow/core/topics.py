"""The names of the topics every service agrees on."""

STORAGE_QUEUE = "storage_queue"
DICOM_STATE_QUEUE = "dicom_state_queue"
DICOM_IMAGE_QUEUE = "dicom_image_queue"
LOG_QUEUE = "log_queue"
ACCESS_LOG_QUEUE = "access_log_queue"

TOPICS = (STORAGE_QUEUE, DICOM_STATE_QUEUE, DICOM_IMAGE_QUEUE, LOG_QUEUE, ACCESS_LOG_QUEUE)
