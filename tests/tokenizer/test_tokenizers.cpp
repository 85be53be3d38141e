// Both tokenizer plugins, loaded through the registry, against ids made by the
// official libraries: the shared public data (../shared/tokenizers/testdata)
// and Corvid's own corpus (data/corpus.jsonl, expected ids in data/*_expected.jsonl,
// made by tools/expected_neox20b.js and tools/expected_world.py).
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <optional>
#include <thread>

#include "corvid/sdk/error.h"
#include "corvid/sdk/tokenizer.h"
#include "tokenizer_test_util.h"

using namespace tok_test;
using corvid::Tokenizer;

namespace {

std::shared_ptr<Tokenizer> load_or_skip(const std::string& path) {
  if (!exists(path)) return nullptr;
  return corvid::load_tokenizer(registry(), path);
}

#define REQUIRE_TOKENIZER(var, path)                                                   \
  auto var = load_or_skip(path);                                                       \
  if (!var) GTEST_SKIP() << "tokenizer file not found: " << (path) << " (shared data)"

struct Case {
  std::string text;
  std::vector<int32_t> ids;
  std::optional<std::string> decoded;  // expected decode(ids) when it is not `text`
};

std::vector<Case> public_cases(const std::string& name) {
  std::vector<Case> out;
  std::string p = shared_tokenizers_dir() + "/testdata/" + name + "_public.jsonl";
  if (!exists(p)) return out;
  for (auto& j : read_jsonl(p)) out.push_back({j["text"], j["ids"].get<std::vector<int32_t>>(), std::nullopt});
  if (name == "neox20b") {
    for (auto& j : read_jsonl(data_dir() + "/neox20b_public_roundtrip.jsonl"))
      out.at(j["line"].get<size_t>() - 1).decoded = j["decoded"].get<std::string>();
  }
  return out;
}

std::vector<Case> corpus_cases(const std::string& name) {
  auto texts = read_jsonl(data_dir() + "/corpus.jsonl");
  auto expected = read_jsonl(data_dir() + "/" + name + "_expected.jsonl");
  EXPECT_EQ(texts.size(), expected.size());
  std::vector<Case> out;
  for (size_t i = 0; i < texts.size() && i < expected.size(); ++i) {
    Case c{texts[i]["text"], expected[i]["ids"].get<std::vector<int32_t>>(), std::nullopt};
    if (expected[i].contains("decoded")) c.decoded = expected[i]["decoded"].get<std::string>();
    out.push_back(std::move(c));
  }
  return out;
}

std::string show(const std::string& s) { return nlohmann::json(s).dump().substr(0, 120); }

void expect_same_ids(const Tokenizer& tok, const std::vector<Case>& cases) {
  ASSERT_FALSE(cases.empty());
  size_t bad = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    auto got = tok.encode(cases[i].text);
    if (got != cases[i].ids) {
      ++bad;
      ADD_FAILURE() << "line " << i + 1 << " " << show(cases[i].text) << ": " << got.size() << " ids vs "
                    << cases[i].ids.size() << " expected";
    }
  }
  EXPECT_EQ(bad, 0u) << "of " << cases.size();
}

void expect_round_trip(const Tokenizer& tok, const std::vector<Case>& cases) {
  for (size_t i = 0; i < cases.size(); ++i) {
    std::string want = cases[i].decoded.value_or(cases[i].text);
    EXPECT_EQ(tok.decode(tok.encode(cases[i].text)), want) << "line " << i + 1 << " " << show(cases[i].text);
  }
}

// Feeding the expected ids one by one: every chunk printed is whole UTF-8 and
// the chunks add up to the full decode. (A chunk may only be invalid where the
// decoded bytes themselves are, which the expected ids never produce here.)
void expect_streaming_ok(const Tokenizer& tok, const std::vector<Case>& cases) {
  for (size_t i = 0; i < cases.size(); ++i) {
    corvid::StreamingDecoder dec(tok);
    std::string all;
    for (size_t k = 0; k < cases[i].ids.size(); ++k) {
      std::string chunk = dec.push(cases[i].ids[k]);
      ASSERT_TRUE(valid_utf8(chunk)) << "line " << i + 1 << " after token " << k << ": broken character "
                                     << show(chunk);
      all += chunk;
      // What was printed so far is a prefix of the decoded prefix of the ids.
      std::string prefix = tok.decode(std::span<const int32_t>(cases[i].ids.data(), k + 1));
      ASSERT_EQ(prefix.compare(0, all.size(), all), 0) << "line " << i + 1;
      ASSERT_EQ(all + dec.pending(), prefix) << "line " << i + 1;
    }
    EXPECT_TRUE(dec.pending().empty()) << "line " << i + 1 << " left bytes pending at the end";
    EXPECT_EQ(all + dec.flush(), tok.decode(cases[i].ids));
  }
}

}  // namespace

TEST(Neox20B, PublicDataIdenticalIds) {
  REQUIRE_TOKENIZER(tok, neox_path());
  auto cases = public_cases("neox20b");
  if (cases.empty()) GTEST_SKIP() << "public test data not found";
  EXPECT_EQ(cases.size(), 59u);
  expect_same_ids(*tok, cases);
}

TEST(World, PublicDataIdenticalIds) {
  REQUIRE_TOKENIZER(tok, world_path());
  auto cases = public_cases("world");
  if (cases.empty()) GTEST_SKIP() << "public test data not found";
  EXPECT_EQ(cases.size(), 59u);
  expect_same_ids(*tok, cases);
}

TEST(Neox20B, CorpusIdenticalIds) {
  REQUIRE_TOKENIZER(tok, neox_path());
  auto cases = corpus_cases("neox20b");
  EXPECT_GE(cases.size(), 500u);
  expect_same_ids(*tok, cases);
}

TEST(World, CorpusIdenticalIds) {
  REQUIRE_TOKENIZER(tok, world_path());
  auto cases = corpus_cases("world");
  EXPECT_GE(cases.size(), 500u);
  expect_same_ids(*tok, cases);
}

TEST(Neox20B, RoundTripIsNfcBetweenSpecialTokens) {
  REQUIRE_TOKENIZER(tok, neox_path());
  auto pub = public_cases("neox20b");
  expect_round_trip(*tok, pub);
  auto corpus = corpus_cases("neox20b");
  size_t changed = 0;
  for (auto& c : corpus) changed += c.decoded.has_value();
  EXPECT_GT(changed, 20u);  // the corpus does exercise NFC and special tokens
  expect_round_trip(*tok, corpus);
}

TEST(World, RoundTripIsExact) {
  REQUIRE_TOKENIZER(tok, world_path());
  for (auto* name : {"public", "corpus"}) {
    auto cases = std::string(name) == "public" ? public_cases("world") : corpus_cases("world");
    for (auto& c : cases) c.decoded.reset();
    expect_round_trip(*tok, cases);
  }
}

TEST(Neox20B, StreamingDecodeNeverBreaksACharacter) {
  REQUIRE_TOKENIZER(tok, neox_path());
  expect_streaming_ok(*tok, public_cases("neox20b"));
  expect_streaming_ok(*tok, corpus_cases("neox20b"));
}

TEST(World, StreamingDecodeNeverBreaksACharacter) {
  REQUIRE_TOKENIZER(tok, world_path());
  expect_streaming_ok(*tok, public_cases("world"));
  expect_streaming_ok(*tok, corpus_cases("world"));
}

TEST(Neox20B, VocabularyFacts) {
  REQUIRE_TOKENIZER(tok, neox_path());
  EXPECT_EQ(tok->kind(), "hf_bpe");
  EXPECT_EQ(tok->vocab_size(), 50277u);
  EXPECT_EQ(tok->eot_id(), 0);
  auto added = tok->added_tokens();
  ASSERT_EQ(added.size(), 25u);
  EXPECT_EQ(added[0].text, "<|endoftext|>");
  EXPECT_TRUE(added[0].special);
  EXPECT_EQ(added[2].id, 50254);
  EXPECT_EQ(added[2].text, std::string(24, ' '));
  EXPECT_FALSE(added[2].special);
  // rwkv-reference §9.2: 187 = "\n", 535 = "\n\n"; the README's example ids.
  EXPECT_EQ(tok->token_bytes(187), "\n");
  EXPECT_EQ(tok->token_bytes(535), "\n\n");
  EXPECT_EQ(tok->encode("\nThe following is a"), (std::vector<int32_t>{187, 510, 1563, 310, 247}));
  EXPECT_EQ(tok->token_bytes(0), "");  // special: decodes to nothing
  EXPECT_EQ(tok->token_bytes(50276), "  ");
  EXPECT_EQ(tok->token_bytes(-1), "");
  EXPECT_EQ(tok->token_bytes(1 << 20), "");
}

TEST(World, VocabularyFacts) {
  REQUIRE_TOKENIZER(tok, world_path());
  EXPECT_EQ(tok->kind(), "rwkv_world");
  EXPECT_EQ(tok->vocab_size(), 65530u);
  EXPECT_EQ(tok->eot_id(), 0);
  // rwkv-reference §9.3: ids 1..256 are the bytes, "\n" = 11, "\n\n" = 261, 65529 = 128 spaces.
  for (int b = 0; b < 256; ++b) EXPECT_EQ(tok->token_bytes(b + 1), std::string(1, char(b)));
  EXPECT_EQ(tok->encode("\n"), std::vector<int32_t>{11});
  EXPECT_EQ(tok->encode("\n\n"), std::vector<int32_t>{261});
  EXPECT_EQ(tok->token_bytes(65529), std::string(128, ' '));
  EXPECT_EQ(tok->encode(std::string(128, ' ')), std::vector<int32_t>{65529});
  EXPECT_EQ(tok->token_bytes(0), "");
}

TEST(World, EncodesArbitraryBytes) {
  REQUIRE_TOKENIZER(tok, world_path());
  // Not UTF-8 at all: still one token per byte where nothing longer matches.
  std::string junk = "\xff\xfe\x80";
  EXPECT_EQ(tok->encode(junk), (std::vector<int32_t>{256, 255, 129}));
  EXPECT_EQ(tok->decode(tok->encode(junk)), junk);
  EXPECT_TRUE(tok->encode("").empty());
}

TEST(Neox20B, InvalidUtf8IsAnErrorNotACrash) {
  REQUIRE_TOKENIZER(tok, neox_path());
  EXPECT_THROW(tok->encode("abc\xff"), corvid::Error);
  EXPECT_THROW(tok->encode("\xe2\x82"), corvid::Error);          // truncated
  EXPECT_THROW(tok->encode("\xed\xa0\x80"), corvid::Error);      // surrogate
  EXPECT_THROW(tok->encode("\xc0\xaf"), corvid::Error);          // overlong
  try {
    tok->encode("ok\xfe");
  } catch (const corvid::Error& e) {
    EXPECT_NE(std::string(e.what()).find("byte 2"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(tok->encode("").empty());
}

// Long runs exercise the regex engine's backtracking and the added-token
// splitter; the expected ids were checked against tokenizers@0.23.2.
TEST(Neox20B, LongRuns) {
  REQUIRE_TOKENIZER(tok, neox_path());
  auto spaces = tok->encode(std::string(100000, ' '));
  ASSERT_EQ(spaces.size(), 4167u);  // 4166 runs of 24 spaces + one of 16
  EXPECT_EQ(spaces.front(), 50254);
  EXPECT_EQ(spaces.back(), 50262);
  EXPECT_EQ(tok->encode(std::string(200000, 'a')), std::vector<int32_t>(25000, 49642));
  EXPECT_EQ(tok->encode(std::string(100000, '1')), std::vector<int32_t>(12500, 31044));
  EXPECT_EQ(tok->encode(std::string(25, ' ')), (std::vector<int32_t>{50254, 209}));
  EXPECT_EQ(tok->encode("x" + std::string(25, ' ') + "y"), (std::vector<int32_t>{89, 50254, 340}));
}

// The same tokenizer used from several threads gives the same ids.
TEST(Neox20B, ConcurrentEncodeIsConsistent) {
  REQUIRE_TOKENIZER(tok, neox_path());
  auto cases = corpus_cases("neox20b");
  std::vector<std::thread> threads;
  std::atomic<int> bad{0};
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (size_t i = t; i < cases.size(); i += 2)
        if (tok->encode(cases[i].text) != cases[i].ids) ++bad;
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
}

// Added tokens with lstrip / rstrip / normalized / special in combination, on a
// tiny committed tokenizer.json (tools/make_added_flags_tokenizer.py); expected
// ids and decodes from the official library (tools/expected_neox20b.js).
TEST(HfBpeAddedTokenFlags, MatchOfficialLibrary) {
  auto tok = corvid::load_tokenizer(registry(), data_dir() + "/added_flags_tokenizer.json");
  auto texts = read_jsonl(data_dir() + "/added_flags_texts.jsonl");
  auto expected = read_jsonl(data_dir() + "/added_flags_expected.jsonl");
  ASSERT_EQ(texts.size(), expected.size());
  ASSERT_GE(texts.size(), 20u);
  for (size_t i = 0; i < texts.size(); ++i) {
    std::string text = texts[i]["text"];
    auto ids = tok->encode(text);
    EXPECT_EQ(ids, expected[i]["ids"].get<std::vector<int32_t>>()) << "line " << i + 1 << " " << show(text);
    std::string want = expected[i].value("decoded", text);
    std::string got = tok->decode(ids);
    // HF turns the bytes into a string lossily; Corvid returns the bytes. The
    // added token "café" (all characters in the byte alphabet) decodes to the
    // byte 0xE9 in both, which HF shows as U+FFFD.
    if (valid_utf8(got)) EXPECT_EQ(got, want) << "line " << i + 1;
    else EXPECT_EQ(got, "caf\xE9 caf\xE9") << "line " << i + 1;
  }
}
