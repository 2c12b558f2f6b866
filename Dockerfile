# The Strom image: one statically linked `strom` binary on an empty (scratch) base, so nothing has
# to be pulled from a registry. Build it with `bash scripts/docker-build`, which compiles the static
# binary and passes a build context holding only the files copied below (the binary, the default
# config and an empty data directory), not the repository.
FROM scratch

COPY strom /usr/local/bin/strom
COPY server.properties /etc/strom/server.properties
# The data directory (log.dirs), owned by the unprivileged user the broker runs as. A named
# volume mounted here starts with this ownership.
COPY --chown=65532:65532 data/ /var/lib/strom/

ENV PATH=/usr/local/bin
USER 65532:65532
VOLUME /var/lib/strom
# 9092: clients (PLAINTEXT; INTERNAL in docker-compose.yml); 19092: the compose cluster's EXTERNAL
# client listener, published for the host; 9093: the controller listener of a multi-node cluster.
EXPOSE 9092 19092 9093

# `docker run strom:latest` starts a single node (see docker/server.properties); any other
# arguments run another command of the binary: `docker run --rm strom:latest topics list
# --bootstrap-server strom-1:9092`.
ENTRYPOINT ["strom"]
CMD ["server", "--config", "/etc/strom/server.properties"]
