// safetensors reading: values (from expected_safetensors.json, written by
// make_hostile.py from torch tensors), metadata, and broken headers.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "corvid/io/checkpoint.h"
#include "io_test_util.h"

namespace corvid {
namespace {

using iotest::expect_open_error;
using iotest::fixture;

TEST(SafetensorsReader, GoodFileValuesNamesMetadata) {
  auto ck = Checkpoint::open(fixture("good.safetensors"));
  EXPECT_EQ(ck->format(), Checkpoint::Format::Safetensors);
  EXPECT_STREQ(format_name(ck->format()), "safetensors");
  std::ifstream f(fixture("expected_safetensors.json"));
  nlohmann::json ex = nlohmann::json::parse(f);
  EXPECT_EQ(ck->names(), ex["names"].get<std::vector<std::string>>());  // header order
  EXPECT_EQ(ck->metadata(), (ex["metadata"].get<std::map<std::string, std::string>>()));
  for (const auto& [name, vals] : ex["tensors"].items()) {
    SCOPED_TRACE(name);
    const TensorView* t = ck->find(name);
    ASSERT_NE(t, nullptr);
    EXPECT_TRUE(t->is_contiguous());
    EXPECT_EQ(iotest::elements(*t), vals.get<std::vector<double>>());
  }
  EXPECT_EQ(ck->find("c.bf16")->dtype, DType::BF16);
  EXPECT_EQ(ck->find("g.scalar")->ndim, 0);
  EXPECT_EQ(ck->find("f.empty")->shape[1], 4);
}

TEST(SafetensorsReader, BadHeaderLength) {
  expect_open_error(fixture("st_header_too_long.safetensors"), {"header length 1099511627776 at byte 0", "expected 2 to"});
  expect_open_error(fixture("st_header_len_past_end.safetensors"), {"header length", "out of range"});
  expect_open_error(fixture("st_tiny.safetensors"), {"too short for a safetensors header", "at least 8"});
}

TEST(SafetensorsReader, BadJson) {
  expect_open_error(fixture("st_bad_json.safetensors"), {"invalid JSON in the safetensors header at byte", "expected a JSON object"});
  expect_open_error(fixture("st_not_object.safetensors"), {"is a JSON array", "expected an object"});
  expect_open_error(fixture("st_bad_metadata.safetensors"), {"'__metadata__'", "value of 'n' is a JSON number", "expected a string"});
}

TEST(SafetensorsReader, OffsetsAndShapesAreValidated) {
  expect_open_error(fixture("st_offsets_out_of_range.safetensors"), {"entry 'x'", "data_offsets [0, 800]", "out of range"});
  expect_open_error(fixture("st_offsets_size_mismatch.safetensors"), {"entry 'x'", "span 8 bytes", "expected 12"});
  expect_open_error(fixture("st_offsets_reversed.safetensors"), {"entry 'x'", "[8, 0]", "begin <= end"});
  expect_open_error(fixture("st_overlap.safetensors"), {"'x' and 'y' overlap", "expected disjoint"});
  expect_open_error(fixture("st_negative_shape.safetensors"), {"entry 'x'", "shape entry 0 is -2"});
  expect_open_error(fixture("st_huge_shape.safetensors"), {"entry 'x'", "overflows 64-bit sizes"});
  expect_open_error(fixture("st_unknown_dtype.safetensors"), {"dtype 'F64' is not supported", "expected one of F32"});
  expect_open_error(fixture("st_truncated.safetensors"), {"data_offsets", "out of range"});
}

}  // namespace
}  // namespace corvid
