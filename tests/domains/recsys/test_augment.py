"""LLM augmentation: loopback chat-completions server, tiny local transformers LM, KG backend, cache, parsing."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch

from domains.recsys.llmrec.augmentation import DecodingSettings, knowledge_graph_backend, run_augmentation
from domains.recsys.llmrec.augmentation_files import read_augmentation, write_augmentation
from domains.recsys.llmrec.backends import ChatCompletionsBackend, TransformersBackend
from domains.recsys.llmrec.prompt_cache import PromptCache
from domains.recsys.llmrec.prompts import parse_attribute_answer, parse_edge_answer, parse_profile_answer
from domains.recsys.llmrec.recbole_dataset import read_recbole_interactions
from domains.recsys.recbole_io import DataFormatError


class ScriptedChatServer:
    """A loopback OpenAI-style chat-completions server that answers from a script and stops itself.

    ``script(request_json, call_number) -> (status, body_text, delay_s)``. The server shuts down after
    ``max_requests`` requests or ``lifetime_s`` seconds, whichever comes first.
    """

    def __init__(self, script, max_requests: int = 200, lifetime_s: float = 60.0) -> None:
        self.calls: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                length = int(self.headers.get("Content-Length", 0))
                request = json.loads(self.rfile.read(length))
                outer.calls.append({"path": self.path, "auth": self.headers.get("Authorization"), **request})
                status, body, delay = script(request, len(outer.calls))
                time.sleep(delay)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body.encode())
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout) — expected in the slow-answer case
                if len(outer.calls) >= max_requests:
                    threading.Thread(target=outer.server.shutdown, daemon=True).start()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.timer = threading.Timer(lifetime_s, self.server.shutdown)

    def __enter__(self) -> ScriptedChatServer:
        self.thread.start()
        self.timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self.timer.cancel()
        self.server.shutdown()
        self.server.server_close()


def completion(content: str) -> str:
    return json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]})


@pytest.fixture
def data(synthetic_recbole: Path):
    loaded, tables = read_recbole_interactions(synthetic_recbole, seed=0)
    return loaded, tables


def _candidates(n_users: int, k: int = 4) -> np.ndarray:
    return np.tile(np.arange(k), (n_users, 1))


def test_chat_backend_counts_malformed_retries_slow_and_server_errors_and_caches(data, tmp_path: Path) -> None:
    loaded, _ = data
    users = np.arange(5)

    # Attempts in order: request 1 = slow (client times out) → 503 → good; request 2 = chatty answer without
    # pos::neg (cached, malformed); request 3 = broken HTTP body (malformed, not cached); then good answers.
    scripted = {
        1: (200, completion("1::2"), 1.5),
        2: (503, "busy", 0.0),
        4: (200, completion("I like both!"), 0.0),
        5: (200, "{not json", 0.0),
    }

    def script(request, call):
        return scripted.get(call, (200, completion("Sure: [1]::[3]"), 0.0))

    cache = PromptCache(tmp_path / "cache")
    candidates = _candidates(loaded.n_users)
    with ScriptedChatServer(script) as server:
        backend = ChatCompletionsBackend(
            server.url, "test-model", api_key="k", timeout_s=0.5, max_retries=3, backoff_s=0.01
        )
        result = run_augmentation(loaded, backend, cache, tasks=("edges",), candidates=candidates, users=users)
        assert len(server.calls) == 7
        assert server.calls[0]["path"] == "/v1/chat/completions" and server.calls[0]["auth"] == "Bearer k"
        assert server.calls[0]["temperature"] == 0.6 and server.calls[0]["top_p"] == 0.1
        again = run_augmentation(loaded, backend, cache, tasks=("edges",), candidates=candidates, users=users)
        assert len(server.calls) == 8, "only the request whose answer never arrived intact is sent again"
    assert vars(result.summary["edges"]) == dict(
        requested=5, answered=3, cached=0, malformed=2, failed=0, unsupported=0
    )
    assert vars(again.summary["edges"]) == dict(requested=5, answered=4, cached=4, malformed=1, failed=0, unsupported=0)
    assert result.edges == [(0, 0, 2), (3, 0, 2), (4, 0, 2)], "ids 1 and 3 are items 0 and 2"
    assert again.edges == [(0, 0, 2), (2, 0, 2), (3, 0, 2), (4, 0, 2)]


def test_chat_backend_reports_failure_when_the_server_never_answers(data, tmp_path: Path) -> None:
    loaded, _ = data
    with ScriptedChatServer(lambda request, call: (500, "down", 0.0), max_requests=50) as server:
        backend = ChatCompletionsBackend(server.url, "m", timeout_s=1, max_retries=2, backoff_s=0.01)
        result = run_augmentation(loaded, backend, PromptCache(tmp_path), tasks=("attributes",), items=np.arange(2))
        assert len(server.calls) == 6, "each request: one try + two retries"
    assert result.summary["attributes"].failed == 2 and not result.item_attributes
    assert not list(tmp_path.rglob("*.json")), "failures are not cached"


def test_knowledge_graph_backend_derives_attributes_and_overlap_edges(data, tmp_path: Path) -> None:
    loaded, tables = data
    backend = knowledge_graph_backend(loaded, tables)
    candidates = np.zeros((loaded.n_users, 3), dtype=np.int64)
    # User 0 belongs to taste group 0 (items 1, 4, 7, … i.e. index % 3 == 0); candidates: one per group.
    candidates[:] = [1, 0, 2]
    result = run_augmentation(
        loaded, backend, PromptCache(tmp_path), tasks=("edges", "attributes", "profiles"), candidates=candidates
    )
    edges = {user: (pos, neg) for user, pos, neg in result.edges}
    assert edges[0][0] == 0, "the candidate sharing director/country/language/genre with the history wins"
    # Attributes add what the model does not have: item-file genres, decade and title words, not the KG's
    # director/country/language that are already its side attributes.
    assert result.item_attributes[0] == {"genre": ["Action", "Thriller"], "decade": ["1980s"], "title_word": ["movie"]}
    assert result.item_attributes[7]["decade"] == ["1980s"] and result.item_attributes[25]["decade"] == ["2000s"]
    assert all(not set(values) & {"director", "country", "language"} for values in result.item_attributes.values())
    assert result.summary["attributes"].answered == loaded.n_items, "every item is in the .item file"
    # Profiles summarise the training history: user 0 (taste group 0) watches Action/Thriller items.
    assert result.summary["profiles"].answered == loaded.n_users
    profile = result.user_profiles[0]
    assert profile["liked genre"].startswith(("Action, Thriller", "Thriller, Action"))
    assert "Action" not in profile["disliked genre"] and profile["age"] == "unknown", "no .user file here"
    group_one = result.user_profiles[1]
    assert group_one["liked genre"].startswith(("Comedy, Romance", "Romance, Comedy"))
    folder = write_augmentation(result, loaded, tmp_path / "out", {"backend": backend.identity})
    back = read_augmentation(folder, loaded)
    assert sorted(map(tuple, back.edges.tolist())) == sorted(result.edges)
    assert back.item_attributes == result.item_attributes
    assert "liked genre: Action" in back.user_profiles[0] or "liked genre: Thriller" in back.user_profiles[0]
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["tasks"]["edges"]["answered"] == len(result.edges)


def test_offline_profiles_take_age_and_gender_from_the_user_file(synthetic_recbole: Path, tmp_path: Path) -> None:
    users = "user_id:token\tage:token\tgender:token\toccupation:token\n" + "".join(
        f"{user}\t{20 + user}\t{'F' if user % 2 else 'M'}\twriter\n" for user in range(1, 37)
    )
    (synthetic_recbole / "synth.user").write_text(users)
    loaded, tables = read_recbole_interactions(synthetic_recbole, seed=0)
    backend = knowledge_graph_backend(loaded, tables)
    result = run_augmentation(loaded, backend, PromptCache(tmp_path), tasks=("profiles",))
    first = result.user_profiles[loaded.user_index()["1"]]
    assert (first["age"], first["gender"]) == ("21", "F")
    assert first["liked directors"] == "unknown", "KG directors are ids without names: not guessed"


def test_augmentation_files_with_unknown_ids_are_rejected(data, tmp_path: Path) -> None:
    loaded, _ = data
    (tmp_path / "edges.tsv").write_text("user_id:token\tpos_item_id:token\tneg_item_id:token\n1\t2\t3\n1\t999\t3\n")
    with pytest.raises(DataFormatError, match=r"edges\.tsv:3: unknown item_id '999'"):
        read_augmentation(tmp_path, loaded)


def test_answer_parsers() -> None:
    assert parse_edge_answer("pos::neg → [12]::[7]", ["12", "7", "3"]) == ("12", "7")
    assert parse_edge_answer("12::12", ["12"]) is None
    assert parse_edge_answer("12::99", ["12", "7"]) is None
    assert parse_attribute_answer("Ann Lee::USA|Canada::English\nextra") == {
        "director": ["Ann Lee"],
        "country": ["USA", "Canada"],
        "language": ["English"],
    }
    assert parse_attribute_answer("Ann Lee::USA") is None
    assert parse_attribute_answer("genre=Drama|War::decade=1990s::title_word=unknown") == {
        "genre": ["Drama", "War"],
        "decade": ["1990s"],
    }
    assert parse_attribute_answer("genre=Drama::bad name=x") is None
    assert parse_attribute_answer("unknown::USA::English") == {"country": ["USA"], "language": ["English"]}
    keys = ["age", "gender", "liked genre", "disliked genre", "liked directors", "country", "language"]
    good = "Here: " + json.dumps(dict.fromkeys(keys, "x")) + " done"
    assert parse_profile_answer(good)["liked genre"] == "x"
    assert parse_profile_answer('{"age": 3}') is None and parse_profile_answer("no json") is None


def _tiny_causal_lm(folder: Path) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    special = {"unk_token": "[UNK]", "pad_token": "[PAD]", "eos_token": "[EOS]"}
    tokenizer = Tokenizer(models.WordLevel(unk_token=special["unk_token"]))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    corpus = ["user : system : assistant : Movie 1 2 3 4 5 pos :: neg [ ] genres Action Comedy Drama"]
    tokenizer.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=["[UNK]", "[PAD]", "[EOS]"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, **special)
    fast.save_pretrained(folder)
    config = GPT2Config(vocab_size=fast.vocab_size, n_positions=512, n_embd=16, n_layer=1, n_head=2)
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


def test_local_transformers_backend_generates_parses_and_caches(data, tmp_path: Path) -> None:
    loaded, _ = data
    model_dir = _tiny_causal_lm(tmp_path / "tiny-lm")
    backend = TransformersBackend(str(model_dir), device="cpu", seed=0)
    cache = PromptCache(tmp_path / "cache")
    decoding = DecodingSettings(max_tokens=6)
    first = run_augmentation(loaded, backend, cache, tasks=("attributes",), items=np.arange(3), decoding=decoding)
    counts = first.summary["attributes"]
    assert counts.requested == 3 and counts.answered + counts.malformed == 3 and counts.failed == 0
    cached_files = list((tmp_path / "cache").rglob("*.json"))
    assert len(cached_files) == 3
    assert all(isinstance(json.loads(path.read_text())["answer"], str) for path in cached_files)
    second = run_augmentation(loaded, backend, cache, tasks=("attributes",), items=np.arange(3), decoding=decoding)
    assert second.summary["attributes"].cached == 3
    assert second.item_attributes == first.item_attributes
