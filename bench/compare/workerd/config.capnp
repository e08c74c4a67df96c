# workerd running the seed's Durable Objects (worker.js) with on-disk storage.
#
# bench/compare.sh starts it as
#   workerd serve config.capnp --socket-addr http=127.0.0.1:PORT \
#       --directory-path do-storage=DATA_DIR
# so the address and the data directory below are only defaults.
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    (name = "main", worker = .mainWorker),
    # Where the objects' SQLite files go; one file per object.
    (name = "do-storage", disk = (path = "/tmp/durin-compare-workerd", writable = true)),
  ],
  sockets = [
    (name = "http", address = "127.0.0.1:8787", http = (), service = "main"),
  ],
);

const mainWorker :Workerd.Worker = (
  modules = [
    (name = "worker.js", esModule = embed "worker.js"),
  ],
  compatibilityDate = "2024-09-23",
  # The seed's ChatRoom never calls close(), so without this flag a client's
  # close frame goes unanswered (loadgen counts each as an error); workers
  # dated 2026-04-07 or later get the reply by default.
  compatibilityFlags = ["web_socket_auto_reply_to_close"],
  durableObjectNamespaces = [
    (className = "RateLimiter", uniqueKey = "durin-compare-ratelimiter"),
    (className = "Counter", uniqueKey = "durin-compare-counter"),
    (className = "ChatRoom", uniqueKey = "durin-compare-chatroom"),
  ],
  durableObjectStorage = (localDisk = "do-storage"),
  bindings = [
    (name = "RATE_LIMITER", durableObjectNamespace = "RateLimiter"),
    (name = "COUNTER", durableObjectNamespace = "Counter"),
    (name = "CHAT_ROOM", durableObjectNamespace = "ChatRoom"),
  ],
);
