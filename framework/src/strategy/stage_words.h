// Shared by the DSL parser and the XML config loader: what a device word and a
// dtype word may be (rwkv-reference §3.1), with messages that say why not.
#pragma once

#include <optional>
#include <string>

#include "corvid/strategy/plan.h"

namespace corvid::strategy_detail {

// Error texts returned below contain the placeholder "{at}" right after the
// offending word; the caller replaces it with " at column N" (DSL) or with
// nothing (XML, where the message starts with file:line). See place().

// Parses "cpu", "cuda", "cuda:N", "mps", "dml" into req.device/device_kind/
// device_index. Returns an error text ("" on success).
std::string parse_device_word(const std::string& word, StageRequest& req);

// Parses "fp32", "fp16i8", ... into req.precision/precision_name. i4/i3 are
// recognised and refused. Returns an error text ("" on success).
std::string parse_dtype_word(const std::string& word, StageRequest& req);

// The stage as DSL text: "cuda fp16", "cuda fp16 *10", "cuda fp16i8 *0+".
std::string stage_text(const StageRequest& req);

// Replaces "{at}" in an error text by `at`.
std::string place(std::string text, const std::string& at);

// Checks explicit ranges (StageRequest::range) for order, overlap, gaps and,
// when n_layer >= 0, for slots past L and slots left over at the end. With
// n_layer < 0 ("head" not yet known) only what holds for every L is checked.
// Throws Error located with stage_message().
void check_ranges(const StrategySpec& spec, int n_layer);

// A string quoted for a one-line message: control characters escaped.
std::string quote(const std::string& s);

}  // namespace corvid::strategy_detail
