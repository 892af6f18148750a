# One image for every dicomflow service; the command picks the service (see docker-compose.yml).
FROM python:3.11-slim-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends dcmtk npm \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY dicomflow ./dicomflow
COPY sql ./sql
COPY stack ./stack
COPY viewer/package.json viewer/install.sh ./viewer/
RUN pip install --no-cache-dir . && bash viewer/install.sh

ENV DICOMFLOW_STATE_DIR=/var/lib/dicomflow
VOLUME ["/var/lib/dicomflow"]
ENTRYPOINT ["dicomflow"]
