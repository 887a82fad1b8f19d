FROM python:3.11-slim

# DATA_DIR is the volume; .env.example leaves it commented out so `--env-file .env` keeps it.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DATA_DIR=/data

RUN useradd --system --create-home --uid 10001 chatbot \
    && mkdir -p /data && chown chatbot /data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY migrations ./migrations
RUN pip install .

USER chatbot
VOLUME ["/data"]
# The console reads and writes files (/attach, exported cards) in its working folder.
WORKDIR /data
# `chatbot run` applies database migrations before it starts the front-ends.
ENTRYPOINT ["chatbot"]
CMD ["run"]
