// alibi_comm_create and its handle (alibi_dist.h), in one process: the table's validation, the
// rank and size, and the release contract. The collectives run under MPI in tests/dist/.
#include <cstddef>
#include <cstdint>

#include "alibi/alibi_dist.h"
#include "error_check.h"
#include "test_util.h"

namespace {

// What a fake communicator's user pointer holds: how often release ran, and with what.
struct Counters {
  int releases = 0;
  void* released = nullptr;
};

int no_alltoallv(void*, const void*, const int64_t*, const int64_t*, void*, const int64_t*,
                 const int64_t*) {
  return 0;
}
int no_allgather(void*, const void*, void*, int64_t) { return 0; }
void count_release(void* user) {
  auto* counters = static_cast<Counters*>(user);
  ++counters->releases;
  counters->released = user;
}

alibi_comm_ops full_table() {
  alibi_comm_ops ops{};
  ops.struct_size = sizeof ops;
  ops.alltoallv = no_alltoallv;
  ops.allgather = no_allgather;
  ops.release = count_release;
  return ops;
}

alibi_comm_t garbage_comm() { return reinterpret_cast<alibi_comm_t>(uintptr_t(0xdeadbeef)); }

// A failed create: the status and message of test::expect_error, *out NULL, release not run.
void expect_create_fails(const alibi_comm_ops* ops, int rank, int size, alibi_status status,
                         const std::string& argument, const std::vector<std::string>& values) {
  Counters counters;
  alibi_comm_t comm = garbage_comm();
  test::expect_error(alibi_comm_create(ops, &counters, rank, size, &comm), status,
                     "alibi_comm_create", argument, values);
  EXPECT_EQ(comm, nullptr);
  EXPECT_EQ(counters.releases, 0) << "a failed create released the caller's user pointer";
}

TEST(DistComm, RankAndSizeAreTheGivenOnes) {
  const alibi_comm_ops ops = full_table();
  for (const auto& [rank, size] : {std::pair{0, 1}, {0, 2}, {1, 2}, {4, 5}, {65535, 65536}}) {
    Counters counters;
    alibi_comm_t comm = nullptr;
    ASSERT_OK(alibi_comm_create(&ops, &counters, rank, size, &comm));
    int got_rank = -1, got_size = -1;
    ASSERT_OK(alibi_comm_get_rank(comm, &got_rank));
    ASSERT_OK(alibi_comm_get_size(comm, &got_size));
    EXPECT_EQ(got_rank, rank);
    EXPECT_EQ(got_size, size);
    alibi_comm_destroy(comm);
    EXPECT_EQ(counters.releases, 1);
  }
}

TEST(DistComm, CreateRejectsNullPointers) {
  const alibi_comm_ops full = full_table();
  expect_create_fails(nullptr, 0, 1, ALIBI_STATUS_NULL_POINTER, "ops", {"NULL"});
  alibi_comm_ops ops = full;
  ops.alltoallv = nullptr;
  expect_create_fails(&ops, 0, 1, ALIBI_STATUS_NULL_POINTER, "alltoallv", {"NULL"});
  ops = full;
  ops.allgather = nullptr;
  expect_create_fails(&ops, 0, 1, ALIBI_STATUS_NULL_POINTER, "allgather", {"NULL"});
  Counters counters;
  test::expect_error(alibi_comm_create(&full, &counters, 0, 1, nullptr),
                     ALIBI_STATUS_NULL_POINTER, "alibi_comm_create", "out", {"NULL"});
  EXPECT_EQ(counters.releases, 0);
}

TEST(DistComm, CreateRejectsRankAndSizeOutOfRange) {
  const alibi_comm_ops ops = full_table();
  expect_create_fails(&ops, 0, 0, ALIBI_STATUS_INVALID_ARGUMENT, "size", {"0"});
  expect_create_fails(&ops, 0, -3, ALIBI_STATUS_INVALID_ARGUMENT, "size", {"-3"});
  expect_create_fails(&ops, -1, 4, ALIBI_STATUS_INVALID_ARGUMENT, "rank", {"-1", "4"});
  expect_create_fails(&ops, 4, 4, ALIBI_STATUS_INVALID_ARGUMENT, "rank", {"4"});
  expect_create_fails(&ops, INT32_MIN, 2, ALIBI_STATUS_INVALID_ARGUMENT, "rank", {"-2147483648"});
}

// The first version of the table is the one of this header, release included (alibi_dist.h:
// "below this first version's ... gives INVALID_ARGUMENT"), so a table without release is one
// of an unknown version.
TEST(DistComm, CreateRejectsStructSizesOfNoVersion) {
  const alibi_comm_ops full = full_table();
  for (size_t size : {size_t(0), sizeof(size_t), offsetof(alibi_comm_ops, release),
                      sizeof(alibi_comm_ops) - 1}) {
    SCOPED_TRACE(size);
    alibi_comm_ops ops = full;
    ops.struct_size = size;
    expect_create_fails(&ops, 0, 1, ALIBI_STATUS_INVALID_ARGUMENT, "struct_size",
                        {std::to_string(size), std::to_string(sizeof(alibi_comm_ops))});
  }
  // A newer caller's table, with a field this library does not know.
  struct Newer {
    alibi_comm_ops ops;
    void* appended;
  } newer{full, nullptr};
  newer.ops.struct_size = sizeof newer;
  expect_create_fails(&newer.ops, 0, 1, ALIBI_STATUS_INVALID_ARGUMENT, "struct_size",
                      {std::to_string(sizeof newer)});
}

TEST(DistComm, DestroyReleasesOnceWithTheUserPointerFromACopiedTable) {
  alibi_comm_ops ops = full_table();
  Counters counters;
  alibi_comm_t comm = nullptr;
  ASSERT_OK(alibi_comm_create(&ops, &counters, 1, 3, &comm));
  ops = alibi_comm_ops{};  // the library holds its own copy
  EXPECT_EQ(counters.releases, 0) << "released before destroy";
  alibi_comm_destroy(comm);
  EXPECT_EQ(counters.releases, 1);
  EXPECT_EQ(counters.released, &counters);
}

TEST(DistComm, DestroyWithoutReleaseAndOfNull) {
  alibi_comm_ops ops = full_table();
  ops.release = nullptr;
  Counters counters;
  alibi_comm_t comm = nullptr;
  ASSERT_OK(alibi_comm_create(&ops, &counters, 0, 1, &comm));
  alibi_comm_destroy(comm);
  EXPECT_EQ(counters.releases, 0);
  alibi_comm_destroy(nullptr);
}

TEST(DistComm, GettersRejectNullPointers) {
  const alibi_comm_ops ops = full_table();
  Counters counters;
  alibi_comm_t comm = nullptr;
  ASSERT_OK(alibi_comm_create(&ops, &counters, 0, 2, &comm));
  int value = 7;
  EXPECT_FAILS(alibi_comm_get_rank(nullptr, &value), ALIBI_STATUS_NULL_POINTER,
               "alibi_comm_get_rank", "comm", "NULL");
  EXPECT_FAILS(alibi_comm_get_size(nullptr, &value), ALIBI_STATUS_NULL_POINTER,
               "alibi_comm_get_size", "comm", "NULL");
  EXPECT_EQ(value, 7);
  EXPECT_FAILS(alibi_comm_get_rank(comm, nullptr), ALIBI_STATUS_NULL_POINTER,
               "alibi_comm_get_rank", "out", "NULL");
  EXPECT_FAILS(alibi_comm_get_size(comm, nullptr), ALIBI_STATUS_NULL_POINTER,
               "alibi_comm_get_size", "out", "NULL");
  alibi_comm_destroy(comm);
}

}  // namespace
