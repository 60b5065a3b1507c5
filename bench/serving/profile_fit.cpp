#include "bench/serving/profile_fit.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>

namespace baton::bench {

namespace {

// Solves the normal equations of the columns in `active` (scaled to unit
// maximum, so token counts and ones are of one size); empty when singular.
std::optional<std::vector<double>> solve_columns(const std::vector<std::vector<double>>& x,
                                                 const std::vector<double>& y,
                                                 const std::vector<size_t>& active,
                                                 const std::vector<double>& scale) {
  const size_t k = active.size();
  std::vector<std::vector<double>> a(k, std::vector<double>(k + 1, 0.0));
  for (size_t r = 0; r < x.size(); ++r) {
    for (size_t i = 0; i < k; ++i) {
      const double xi = x[r][active[i]] / scale[active[i]];
      for (size_t j = 0; j < k; ++j) a[i][j] += xi * x[r][active[j]] / scale[active[j]];
      a[i][k] += xi * y[r];
    }
  }
  double max_diag = 0;
  for (size_t i = 0; i < k; ++i) max_diag = std::max(max_diag, std::abs(a[i][i]));
  for (size_t c = 0; c < k; ++c) {
    size_t pivot = c;
    for (size_t r = c + 1; r < k; ++r) {
      if (std::abs(a[r][c]) > std::abs(a[pivot][c])) pivot = r;
    }
    // Relative to the largest diagonal: columns that differ by less than
    // this are the same column as far as the data can tell.
    if (std::abs(a[pivot][c]) <= 1e-9 * max_diag) return std::nullopt;
    std::swap(a[c], a[pivot]);
    for (size_t r = 0; r < k; ++r) {
      if (r == c) continue;
      const double f = a[r][c] / a[c][c];
      for (size_t j = c; j <= k; ++j) a[r][j] -= f * a[c][j];
    }
  }
  std::vector<double> out(k);
  for (size_t i = 0; i < k; ++i) out[i] = a[i][k] / a[i][i] / scale[active[i]];
  return out;
}

}  // namespace

Result<LinearFit> fit_nonnegative(const std::vector<std::vector<double>>& x,
                                  const std::vector<double>& y) {
  if (x.empty() || x.size() != y.size()) {
    return invalid_argument("fit: need as many samples as results, and at least one");
  }
  const size_t cols = x.front().size();
  std::vector<double> scale(cols, 0.0);
  for (const auto& row : x) {
    if (row.size() != cols) return invalid_argument("fit: rows of different lengths");
    for (size_t j = 0; j < cols; ++j) scale[j] = std::max(scale[j], std::abs(row[j]));
  }
  std::vector<size_t> active;
  for (size_t j = 0; j < cols; ++j) {
    if (scale[j] > 0) active.push_back(j);
  }
  if (x.size() < active.size()) {
    return invalid_argument(
        fmt::format("fit: {} samples for {} unknowns", x.size(), active.size()));
  }
  LinearFit fit;
  fit.coef.assign(cols, 0.0);
  fit.samples = static_cast<int64_t>(x.size());
  // Active set: drop the most negative coefficient and solve again until
  // none is negative (at most `cols` rounds).
  while (!active.empty()) {
    auto c = solve_columns(x, y, active, scale);
    if (!c) {
      return invalid_argument(
          "fit: the probes do not tell the terms apart (collinear columns); vary the probe "
          "sizes");
    }
    size_t worst = c->size();
    for (size_t i = 0; i < c->size(); ++i) {
      if ((*c)[i] < 0 && (worst == c->size() || (*c)[i] < (*c)[worst])) worst = i;
    }
    if (worst == c->size()) {
      for (size_t i = 0; i < active.size(); ++i) fit.coef[active[i]] = (*c)[i];
      break;
    }
    active.erase(active.begin() + static_cast<std::ptrdiff_t>(worst));
  }
  const double mean = std::accumulate(y.begin(), y.end(), 0.0) / static_cast<double>(y.size());
  double ss_res = 0, ss_tot = 0, abs_mean = 0;
  for (size_t r = 0; r < x.size(); ++r) {
    double pred = 0;
    for (size_t j = 0; j < cols; ++j) pred += fit.coef[j] * x[r][j];
    ss_res += (y[r] - pred) * (y[r] - pred);
    ss_tot += (y[r] - mean) * (y[r] - mean);
    abs_mean += std::abs(y[r]);
  }
  abs_mean /= static_cast<double>(y.size());
  fit.r2 = ss_tot > 0 ? 1 - ss_res / ss_tot : (ss_res == 0 ? 1 : 0);
  fit.rel_rms = abs_mean > 0 ? std::sqrt(ss_res / static_cast<double>(y.size())) / abs_mean : 0;
  return fit;
}

Result<PrefillFit> fit_prefill(const std::vector<PrefillSample>& samples) {
  if (samples.size() < 2) return invalid_argument("prefill: at least two probes");
  // One batch size throughout cannot be told from the fixed part: its term
  // is folded into base_s.
  const bool batch_varies =
      std::any_of(samples.begin(), samples.end(),
                  [&](const PrefillSample& s) { return s.batch != samples.front().batch; });
  std::vector<std::vector<double>> x;
  std::vector<double> y;
  for (const auto& s : samples) {
    x.push_back({1.0, static_cast<double>(s.new_tokens), static_cast<double>(s.cached_tokens),
                 batch_varies ? static_cast<double>(s.batch) : 0.0});
    y.push_back(s.seconds);
  }
  BATON_ASSIGN_OR_RETURN(LinearFit fit, fit_nonnegative(x, y));
  if (!(fit.coef[1] > 0)) {
    return invalid_argument("prefill: time did not grow with prompt tokens; probe longer prompts");
  }
  PrefillFit out;
  out.base_s = fit.coef[0];
  out.tokens_per_s = 1.0 / fit.coef[1];
  out.cached_token_s = fit.coef[2];
  out.per_request_s = fit.coef[3];
  out.fit = std::move(fit);
  return out;
}

Result<DecodeFit> fit_decode(const std::vector<DecodeSample>& samples) {
  if (samples.size() < 2) return invalid_argument("decode: at least two probes");
  std::vector<std::vector<double>> x;
  std::vector<double> y;
  for (const auto& s : samples) {
    x.push_back({1.0, static_cast<double>(s.batch), static_cast<double>(s.total_context)});
    y.push_back(s.seconds);
  }
  BATON_ASSIGN_OR_RETURN(LinearFit fit, fit_nonnegative(x, y));
  DecodeFit out;
  out.base_s = fit.coef[0];
  out.per_seq_s = fit.coef[1];
  out.per_context_token_s = fit.coef[2];
  out.fit = std::move(fit);
  return out;
}

Result<LinkFit> fit_link(const std::vector<TransferSample>& samples) {
  if (samples.size() < 2) return invalid_argument("link: at least two transfers");
  std::vector<std::vector<double>> x;
  std::vector<double> y;
  double bytes = 0, tokens = 0;
  for (const auto& s : samples) {
    x.push_back({1.0, s.bytes});
    y.push_back(s.seconds);
    bytes += s.bytes;
    tokens += static_cast<double>(s.tokens);
  }
  BATON_ASSIGN_OR_RETURN(LinearFit fit, fit_nonnegative(x, y));
  if (!(fit.coef[1] > 0)) {
    return invalid_argument("link: transfer time did not grow with bytes; probe longer prompts");
  }
  LinkFit out;
  out.message_s = fit.coef[0];
  out.bytes_per_s = 1.0 / fit.coef[1];
  out.bytes_per_token = tokens > 0 ? bytes / tokens : 0;
  out.fit = std::move(fit);
  return out;
}

namespace {

std::string quality(const LinearFit& f) {
  return fmt::format("least squares over {} probes: R^2 {:.4f}, rms residual {:.1f}% of the mean",
                     f.samples, f.r2, f.rel_rms * 100);
}

}  // namespace

std::string profile_yaml(const MeasuredProfile& p) {
  std::string out;
  std::string desc = p.description;
  size_t start = 0;
  while (start < desc.size()) {
    size_t nl = desc.find('\n', start);
    if (nl == std::string::npos) nl = desc.size();
    out += "# " + desc.substr(start, nl - start) + "\n";
    start = nl + 1;
  }
  out += fmt::format("name: {}\n", p.name);
  out += "prefill:\n";
  out += "  # " + quality(p.prefill.fit) + "\n";
  out += fmt::format("  base_s: {:.6g}\n", p.prefill.base_s);
  out += fmt::format("  tokens_per_s: {:.6g}\n", p.prefill.tokens_per_s);
  out += fmt::format("  cached_token_s: {:.6g}\n", p.prefill.cached_token_s);
  out += fmt::format("  per_request_s: {:.6g}\n", p.prefill.per_request_s);
  out += fmt::format("  step_tokens: {}  # the server's token budget per step\n", p.step_tokens);
  out += "decode:\n";
  out += "  # " + quality(p.decode.fit) + "\n";
  out += fmt::format("  base_s: {:.6g}\n", p.decode.base_s);
  out += fmt::format("  per_seq_s: {:.6g}\n", p.decode.per_seq_s);
  out += fmt::format("  per_context_token_s: {:.6g}\n", p.decode.per_context_token_s);
  out += fmt::format("  max_batch: {}  # the server's sequences per step\n", p.max_batch);
  out += "kv:\n";
  if (p.kv_capacity_tokens) {
    out += fmt::format("  capacity_tokens: {}\n", *p.kv_capacity_tokens);
  } else {
    out += "  # capacity_tokens: not measured (the simulator's default)\n";
  }
  if (p.link) out += fmt::format("  bytes_per_token: {:.6g}\n", p.link->bytes_per_token);
  out += fmt::format("  block_tokens: {}\n", p.block_tokens);
  if (p.messages_per_block > 0) {
    out += fmt::format("  messages_per_block: {}\n", p.messages_per_block);
  }
  if (p.link) {
    out += "link:\n";
    out += "  # " + quality(p.link->fit) + "\n";
    out += fmt::format("  bytes_per_s: {:.6g}\n", p.link->bytes_per_s);
    out += fmt::format("  message_s: {:.6g}\n", p.link->message_s);
  } else {
    out += "# link: not measured (no P/D pair given; the simulator's default)\n";
  }
  out += fmt::format("network_rtt_s: {:.6g}\n", p.network_rtt_s);
  return out;
}

}  // namespace baton::bench
