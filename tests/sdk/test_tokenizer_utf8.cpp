#include <gtest/gtest.h>

#include "corvid/sdk/tokenizer.h"

using corvid::utf8_complete_prefix;

TEST(Utf8, CompletePrefixHoldsBackIncompleteCharacter) {
  EXPECT_EQ(utf8_complete_prefix(""), 0u);
  EXPECT_EQ(utf8_complete_prefix("abc"), 3u);
  std::string e = "\xE2\x82\xAC";  // euro sign, 3 bytes
  EXPECT_EQ(utf8_complete_prefix(e), 3u);
  EXPECT_EQ(utf8_complete_prefix("a" + e.substr(0, 1)), 1u);
  EXPECT_EQ(utf8_complete_prefix("a" + e.substr(0, 2)), 1u);
  std::string g = "\xF0\x9F\x98\x80";  // emoji, 4 bytes
  EXPECT_EQ(utf8_complete_prefix(g.substr(0, 3)), 0u);
  EXPECT_EQ(utf8_complete_prefix(g), 4u);
  // A stray continuation byte or invalid lead is not held back forever.
  EXPECT_EQ(utf8_complete_prefix("a\x80"), 2u);
  EXPECT_EQ(utf8_complete_prefix("a\xFF"), 2u);
}
