#include "model/unicode.h"

#include <gtest/gtest.h>

namespace baton::model {
namespace {

TEST(UnicodeTest, GeneralCategories) {
  EXPECT_EQ(general_category(U'A'), GeneralCategory::kLu);
  EXPECT_EQ(general_category(U'z'), GeneralCategory::kLl);
  EXPECT_EQ(general_category(U'5'), GeneralCategory::kNd);
  EXPECT_EQ(general_category(U'中'), GeneralCategory::kLo);
  EXPECT_EQ(general_category(0x0660), GeneralCategory::kNd);  // Arabic-Indic zero
  EXPECT_EQ(general_category(0x00BD), GeneralCategory::kNo);  // ½
  EXPECT_EQ(general_category(U','), GeneralCategory::kPo);
  EXPECT_EQ(general_category(0x0301), GeneralCategory::kMn);
  EXPECT_EQ(general_category(0x0378), GeneralCategory::kCn);  // unassigned
  EXPECT_TRUE(is_letter(U'é'));
  EXPECT_FALSE(is_letter(U'1'));
  EXPECT_TRUE(is_number(0x2167));  // Roman numeral eight: Nl
  EXPECT_FALSE(is_number(U'x'));
}

TEST(UnicodeTest, WhitespaceIsTheWhiteSpaceProperty) {
  for (char32_t c : {U' ', U'\t', U'\n', U'\r', char32_t{0x0B}, char32_t{0x85}, char32_t{0xA0},
                     char32_t{0x2003}, char32_t{0x3000}}) {
    EXPECT_TRUE(is_whitespace(c)) << static_cast<uint32_t>(c);
  }
  EXPECT_FALSE(is_whitespace(0x200B));  // zero width space is Cf, not White_Space
  EXPECT_FALSE(is_whitespace(0x1C));    // Python's isspace() says yes; Unicode says no
  EXPECT_FALSE(is_whitespace(U'a'));
}

TEST(UnicodeTest, CaseFold) {
  EXPECT_EQ(case_fold(U'S'), U's');
  EXPECT_EQ(case_fold(0x017F), U's');  // long s
  EXPECT_EQ(case_fold(0x212A), U'k');  // Kelvin sign
  EXPECT_EQ(case_fold(U'Ä'), U'ä');
  EXPECT_EQ(case_fold(U'7'), U'7');
}

TEST(UnicodeTest, Nfc) {
  EXPECT_EQ(nfc("e\u0301"), "\u00e9");
  EXPECT_EQ(nfc("\u1100\u1161\u11a8"), "\uac01");  // Hangul L V T
  EXPECT_EQ(nfc("e\u0302\u0323"), "\u1ec7");       // marks reordered, then composed
  EXPECT_EQ(nfc("\u212b"), "\u00c5");              // singleton decomposition
  EXPECT_EQ(nfc("\u0958"), "\u0915\u093c");        // composition exclusion
  EXPECT_EQ(nfc("a\u0301\u0301"), "\u00e1\u0301");
  EXPECT_EQ(nfc("plain ascii"), "plain ascii");
  EXPECT_EQ(nfd("\u00e9"), "e\u0301");
  EXPECT_EQ(nfd("\uac01"), "\u1100\u1161\u11a8");
}

TEST(UnicodeTest, Utf8Validation) {
  EXPECT_TRUE(is_valid_utf8("h\u00e9llo \U0001F600"));
  EXPECT_FALSE(is_valid_utf8("\xC0\x80"));      // overlong
  EXPECT_FALSE(is_valid_utf8("\xED\xA0\x80"));  // surrogate
  EXPECT_FALSE(is_valid_utf8("\xE2\x82"));      // truncated
  EXPECT_FALSE(is_valid_utf8("\xF5\x80\x80\x80"));
}

TEST(UnicodeTest, LossyDecodingReplacesMaximalSubparts) {
  EXPECT_EQ(utf8_lossy("\xE2\x82"
                       "a"),
            "\uFFFD"
            "a");
  EXPECT_EQ(utf8_lossy("\xF0\x9F\x98"), "\uFFFD");
  EXPECT_EQ(utf8_lossy("\xC0\x80"), "\uFFFD\uFFFD");
  EXPECT_EQ(utf8_lossy("ok \xFF!"), "ok \uFFFD!");
  EXPECT_EQ(utf8_lossy("\u00e9"), "\u00e9");
}

}  // namespace
}  // namespace baton::model
