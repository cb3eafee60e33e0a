// What the benchmarks report of a series of samples, in one shape: count, p50/p90/p99, max, mean.
#pragma once

#include <algorithm>
#include <vector>

#include <nlohmann/json.hpp>

namespace vgpu::bench {

inline nlohmann::json summary(std::vector<double> us)
{
    std::sort(us.begin(), us.end());
    auto at = [&](double q) { return us[size_t(q * double(us.size() - 1))]; };
    double sum = 0;
    for (double v : us)
        sum += v;
    return { { "count", us.size() }, { "p50_us", at(0.5) }, { "p90_us", at(0.9) },
        { "p99_us", at(0.99) }, { "max_us", us.back() }, { "mean_us", sum / double(us.size()) } };
}

} // namespace vgpu::bench
