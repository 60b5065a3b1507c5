#pragma once

// Raw Unicode data tables, generated into model/unicode_tables.cpp by
// tools/gen_unicode_tables.py. Internal to model/unicode.cpp: use the
// functions of model/unicode.h instead. All tables are sorted by their first
// field and immutable.

#include <cstddef>
#include <cstdint>

namespace baton::model::unicode_tables {

// Inclusive code point range with one general category (index into the
// GeneralCategory enum of model/unicode.h). Unlisted code points are Cn.
struct CategoryRange {
  char32_t lo;
  char32_t hi;
  uint8_t category;
};

// Inclusive range of code points sharing a non-zero canonical combining class.
struct CombiningRange {
  char32_t lo;
  char32_t hi;
  uint8_t ccc;
};

// Full canonical decomposition of cp: kDecompositionData[offset, offset+len).
struct Decomposition {
  char32_t cp;
  uint16_t offset;
  uint8_t len;
};

// first + second compose canonically to composite (primary composites only).
struct Composition {
  char32_t first;
  char32_t second;
  char32_t composite;
};

// Simple case folding: cp folds to fold.
struct CaseFold {
  char32_t cp;
  char32_t fold;
};

extern const char kUnicodeVersion[];
extern const CategoryRange kCategoryRanges[];
extern const size_t kCategoryRangeCount;
extern const CombiningRange kCombiningRanges[];
extern const size_t kCombiningRangeCount;
extern const Decomposition kDecompositions[];
extern const size_t kDecompositionCount;
extern const char32_t kDecompositionData[];
extern const Composition kCompositions[];
extern const size_t kCompositionCount;
extern const CaseFold kCaseFolds[];
extern const size_t kCaseFoldCount;

}  // namespace baton::model::unicode_tables
