# Small, non-root image of the service. Build: docker build -t newsletter .
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml setup.py MANIFEST.in constraints.txt README.md ./
COPY newsletter ./newsletter
# the wheel carries the templates inside the package (setup.py copies them in)
COPY templates ./templates
RUN pip install --no-cache-dir --prefix=/install -c constraints.txt .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 NEWSLETTER_OUTBOX_DIR=/data/outbox
RUN useradd --create-home --uid 10001 newsletter && mkdir -p /data && chown newsletter /data
COPY --from=build /install /usr/local
WORKDIR /app
COPY docker/entrypoint.sh /usr/local/bin/entrypoint.sh
USER newsletter
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --retries=5 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"
ENTRYPOINT ["entrypoint.sh"]
CMD ["serve", "--host", "0.0.0.0", "--no-worker"]
