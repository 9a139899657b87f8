// The retry policy's pieces that clients reading answers themselves reuse: which answers may be
// sent again (is_retryable_answer), and the back-off between attempts (RetryBackoff).

#include <chrono>

#include <gtest/gtest.h>
#include <serialclient/serialclient.hpp>

namespace serialclient::test {
namespace {

using namespace std::chrono_literals;

TEST(RetryRules, OnlyAnswersSayingTheTaskDidNotRunAreRetryable) {
  EXPECT_TRUE(is_retryable_answer(Result::make_error(253)));
  EXPECT_TRUE(is_retryable_answer(Result::make_goodbye()));
  EXPECT_FALSE(is_retryable_answer(Result::make_error(252)));
  EXPECT_FALSE(is_retryable_answer(Result::make_error(7)));
  EXPECT_FALSE(is_retryable_answer(Result::make_ok()));
}

TEST(RetryRules, BackoffDoublesUpToItsMaximumWithJitter) {
  RetryPolicy policy;
  policy.initial_backoff = 10ms;
  policy.max_backoff = 40ms;
  RetryBackoff backoff(policy, 42);
  const std::chrono::nanoseconds bounds[] = {10ms, 20ms, 40ms, 40ms, 40ms};
  for (const auto bound : bounds) {
    const auto wait = backoff.next();
    EXPECT_GE(wait, bound / 2);
    EXPECT_LE(wait, bound);
  }
  // The same seed gives the same waits.
  RetryBackoff first(policy, 7);
  RetryBackoff second(policy, 7);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(first.next(), second.next());
  }
}

}  // namespace
}  // namespace serialclient::test
