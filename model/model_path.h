#pragma once

// Confines model directories to a model root (`baton serve --model-root`).
//
// A server that loads whatever path it is given can be pointed at any file the
// process may read; with a root set, a model name is resolved under it and
// refused when it, or anything directly inside it, resolves (after `..` and
// symbolic links) to a place outside the root. Pure apart from reading the
// file system's metadata (canonical paths, directory listings).

#include <filesystem>
#include <string>

#include "common/status.h"

namespace baton::model {

// The directory to load for `name` given `root`:
//  - `root` empty: `name` unchanged (no confinement);
//  - `name` of a built-in model ("dummy:<preset>"): unchanged;
//  - otherwise `name` relative to `root` (or absolute), canonicalized.
// Errors: kNotFound when the root or the model does not exist;
// kPermissionDenied when the model directory, or an entry directly inside it
// (a weight file that is a symbolic link, say), resolves outside the root.
// Every message names the model and the root.
Result<std::filesystem::path> resolve_model_path(const std::string& root, const std::string& name);

}  // namespace baton::model
