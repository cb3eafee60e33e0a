// Result<T>, Result<void>, TRY and and_then (base/result.h).
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "base/result.h"

namespace vgpu {
namespace {

Result<int> succeed_with(int value) { return value; }
Result<int> fail_with(std::string_view message) { return Error::format("{}", message); }
Result<void> void_success() { return {}; }
Result<void> void_failure() { return Error::format("void failed"); }

// TRY users: each records how far it got, so the tests can tell an early return from a
// fall-through.
Result<int> add_one_with_try(Result<int> (*source)(), bool& reached_end)
{
    int value = TRY(source());
    reached_end = true;
    return value + 1;
}

Result<void> run_void_with_try(Result<void> (*source)(), bool& reached_end)
{
    TRY(source());
    reached_end = true;
    return {};
}

Result<int> int_from_void_with_try(Result<void> (*source)())
{
    TRY(source());
    return 7;
}

TEST(Result, ConstructedFromValue_HasThatValue)
{
    Result<int> result = 42;

    ASSERT_TRUE(result.has_value());
    EXPECT_TRUE(static_cast<bool>(result));
    EXPECT_EQ(result.value(), 42);
    EXPECT_EQ(*result, 42);
}

TEST(Result, ConstructedFromError_HasThatError)
{
    Result<int> result = Error { "broken", 5 };

    ASSERT_FALSE(result.has_value());
    EXPECT_FALSE(static_cast<bool>(result));
    EXPECT_EQ(result.error().message, "broken");
    EXPECT_EQ(result.error().errno_value, 5);
}

TEST(Result, ConvertibleValue_IsConvertedToT)
{
    Result<std::string> result = "text"; // const char* -> std::string

    ASSERT_TRUE(result.has_value());
    EXPECT_EQ(*result, "text");
}

TEST(Result, ArrowOperator_ReachesTheValue)
{
    Result<std::string> result = std::string("abcd");

    EXPECT_EQ(result->size(), 4u);
}

TEST(Result, ReleaseValue_MovesMoveOnlyValueOut)
{
    Result<std::unique_ptr<int>> result = std::make_unique<int>(9);

    auto owned = result.release_value();

    ASSERT_NE(owned, nullptr);
    EXPECT_EQ(*owned, 9);
}

TEST(Result, ReleaseError_MovesTheErrorOut)
{
    Result<int> result = Error::format("code {}", 3);

    Error error = result.release_error();

    EXPECT_EQ(error.message, "code 3");
}

TEST(ResultVoid, DefaultConstructed_IsSuccess)
{
    Result<void> result;

    EXPECT_TRUE(result.has_value());
    EXPECT_TRUE(static_cast<bool>(result));
}

TEST(ResultVoid, ConstructedFromError_IsFailureWithMessage)
{
    Result<void> result = Error::format("bad {}", "thing");

    ASSERT_FALSE(result.has_value());
    EXPECT_EQ(result.error().message, "bad thing");
}

TEST(Error, FromErrno_CarriesErrnoAndItsDescription)
{
    Error error = Error::from_errno("open(/x)", ENOENT);

    EXPECT_EQ(error.errno_value, ENOENT);
    EXPECT_EQ(error.message, std::string("open(/x): ") + std::strerror(ENOENT));
}

TEST(Error, Format_HasNoErrno)
{
    Error error = Error::format("{} + {} = {}", 1, 2, 3);

    EXPECT_EQ(error.message, "1 + 2 = 3");
    EXPECT_EQ(error.errno_value, 0);
}

TEST(Try, SuccessfulExpression_YieldsValueAndContinues)
{
    bool reached_end = false;

    auto result = add_one_with_try([] { return succeed_with(10); }, reached_end);

    ASSERT_TRUE(result.has_value());
    EXPECT_EQ(*result, 11);
    EXPECT_TRUE(reached_end);
}

TEST(Try, FailingExpression_ReturnsItsErrorEarly)
{
    bool reached_end = false;

    auto result = add_one_with_try([] { return fail_with("inner failure"); }, reached_end);

    ASSERT_FALSE(result.has_value());
    EXPECT_EQ(result.error().message, "inner failure");
    EXPECT_FALSE(reached_end);
}

TEST(Try, FailingVoidExpression_ReturnsItsErrorEarly)
{
    bool reached_end = false;

    auto result = run_void_with_try(void_failure, reached_end);

    ASSERT_FALSE(result.has_value());
    EXPECT_EQ(result.error().message, "void failed");
    EXPECT_FALSE(reached_end);
}

TEST(Try, SuccessfulVoidExpression_Continues)
{
    bool reached_end = false;

    auto result = run_void_with_try(void_success, reached_end);

    EXPECT_TRUE(result.has_value());
    EXPECT_TRUE(reached_end);
}

TEST(Try, VoidErrorInValueFunction_PropagatesAcrossResultTypes)
{
    auto failed = int_from_void_with_try(void_failure);
    auto succeeded = int_from_void_with_try(void_success);

    ASSERT_FALSE(failed.has_value());
    EXPECT_EQ(failed.error().message, "void failed");
    ASSERT_TRUE(succeeded.has_value());
    EXPECT_EQ(*succeeded, 7);
}

TEST(AndThen, OnValue_CallsFunctionWithValue)
{
    Result<int> result = 20;

    auto chained = result.and_then(
        [](int& v) -> Result<std::string> { return std::to_string(v * 2); });

    ASSERT_TRUE(chained.has_value());
    EXPECT_EQ(*chained, "40");
}

TEST(AndThen, OnError_SkipsFunctionAndKeepsError)
{
    Result<int> result = Error::format("first step failed");
    bool called = false;

    auto chained = result.and_then([&](int&) -> Result<std::string> {
        called = true;
        return std::string("unreachable");
    });

    ASSERT_FALSE(chained.has_value());
    EXPECT_EQ(chained.error().message, "first step failed");
    EXPECT_FALSE(called);
}

TEST(AndThen, FunctionFailing_ReturnsItsError)
{
    Result<int> result = 1;

    auto chained = result.and_then(
        [](int&) -> Result<int> { return Error::format("second step failed"); });

    ASSERT_FALSE(chained.has_value());
    EXPECT_EQ(chained.error().message, "second step failed");
}

} // namespace
} // namespace vgpu
