#include "model/model_path.h"

#include <system_error>

namespace baton::model {

namespace fs = std::filesystem;

namespace {

// `path` is `root` or lies below it; both canonical.
bool inside(const fs::path& root, const fs::path& path) {
  auto r = root.begin();
  auto p = path.begin();
  for (; r != root.end(); ++r, ++p) {
    if (p == path.end() || *p != *r) return false;
  }
  return true;
}

}  // namespace

Result<fs::path> resolve_model_path(const std::string& root, const std::string& name) {
  if (root.empty() || name.starts_with("dummy:")) return fs::path(name);
  std::error_code ec;
  const fs::path canonical_root = fs::canonical(root, ec);
  if (ec) return not_found("model root '" + root + "': " + ec.message());
  if (name.empty()) return invalid_argument("model: empty name");
  fs::path candidate(name);
  if (candidate.is_relative()) candidate = canonical_root / candidate;
  const fs::path dir = fs::canonical(candidate, ec);
  if (ec) {
    // Say whether it would have been outside anyway, without probing further.
    if (!inside(canonical_root, candidate.lexically_normal())) {
      return Status(StatusCode::kPermissionDenied,
                    "model '" + name + "': outside the model root '" + root + "'");
    }
    return not_found("model '" + name + "': not found under the model root '" + root +
                     "': " + ec.message());
  }
  if (!inside(canonical_root, dir)) {
    return Status(StatusCode::kPermissionDenied, "model '" + name + "': resolves to " +
                                                     dir.string() + ", outside the model root '" +
                                                     root + "'");
  }
  if (fs::is_directory(dir, ec)) {
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      std::error_code entry_ec;
      if (!entry.is_symlink(entry_ec)) continue;
      const fs::path target = fs::canonical(entry.path(), entry_ec);
      // A dangling link opens nothing; one that resolves must stay inside.
      if (!entry_ec && !inside(canonical_root, target)) {
        return Status(StatusCode::kPermissionDenied, "model '" + name +
                                                         "': " + entry.path().filename().string() +
                                                         " is a link to " + target.string() +
                                                         ", outside the model root '" + root + "'");
      }
    }
    if (ec)
      return not_found("model '" + name + "': cannot list " + dir.string() + ": " + ec.message());
  }
  return dir;
}

}  // namespace baton::model
