"""A tiny callback endpoint for trying celery-dalga: prints every call and answers 200.

python examples/endpoint.py            # listens on 127.0.0.1:5000
python examples/endpoint.py 5000 204   # answer 204 instead (the job is deleted)
"""

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    status = 200

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        print(
            f"POST {self.path} body={body!r} Dalga-Sched={self.headers['Dalga-Sched']} "
            f"Dalga-Instance={self.headers['Dalga-Instance']} "
            f"Idempotency-Key={self.headers['Idempotency-Key']}",
            flush=True,
        )
        self.send_response(self.status)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    Handler.status = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    print(f"endpoint listening on http://127.0.0.1:{port}/", flush=True)
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
