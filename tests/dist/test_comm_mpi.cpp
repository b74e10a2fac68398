// The MPI adapter (alibi/alibi_mpi.h) under mpirun with any number of ranks: its rank and size,
// the bytes its alltoallv and allgather move (every byte of every receive buffer compared),
// counts beyond int, bad input, and test::CountingComm over it. GoogleTest with an MPI main:
// every rank runs every test, and the program fails on every rank when a test failed on any.
#include <gtest/gtest.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "alibi/alibi_mpi.h"
#include "counting_comm.h"
#include "mpi_world.h"
#include "error_check.h"

namespace {

constexpr uint8_t kPoison = 0xA5;

using test::world_rank;
using test::world_size;

// The byte at offset i of what rank `from` sends to rank `to` in round `round`.
uint8_t payload(int round, int from, int to, int64_t i) {
  return uint8_t((round * 131 + from * 37 + to * 11 + i * 7 + i / 251) % 251);
}

// The adapter's own message names the function (or collective), the argument and the values.
void expect_adapter_message(const std::string& function, const std::string& argument,
                            const std::vector<std::string>& values) {
  const std::string message = alibi_mpi_last_error_message();
  EXPECT_TRUE(test::contains_identifier(message, function)) << message;
  EXPECT_TRUE(test::names_argument(message, argument)) << "no " << argument << " in: " << message;
  for (const auto& value : values)
    EXPECT_TRUE(test::shows_value(message, value)) << "no " << value << " in: " << message;
}

// A failed alibi_comm_create_mpi: its status and message.
void expect_adapter_error(alibi_status got, alibi_status want, const std::string& argument,
                          const std::vector<std::string>& values) {
  EXPECT_EQ(got, want) << alibi_status_string(got) << "; " << alibi_mpi_last_error_message();
  expect_adapter_message("alibi_comm_create_mpi", argument, values);
}

// An alibi_comm_t over MPI_COMM_WORLD (or another communicator) for one test.
class MpiComm {
 public:
  explicit MpiComm(MPI_Comm comm = MPI_COMM_WORLD) {
    EXPECT_EQ(alibi_comm_create_mpi(comm, &comm_), ALIBI_STATUS_SUCCESS)
        << alibi_mpi_last_error_message();
  }
  ~MpiComm() { alibi_comm_destroy(comm_); }
  MpiComm(const MpiComm&) = delete;
  MpiComm& operator=(const MpiComm&) = delete;
  alibi_comm_t get() const { return comm_; }

 private:
  alibi_comm_t comm_ = nullptr;
};

int call_alltoallv(alibi_comm_t comm, const void* send, const std::vector<int64_t>& send_counts,
                   const std::vector<int64_t>& send_displs, void* recv,
                   const std::vector<int64_t>& recv_counts,
                   const std::vector<int64_t>& recv_displs) {
  return comm->ops.alltoallv(comm->user, send, send_counts.data(), send_displs.data(), recv,
                             recv_counts.data(), recv_displs.data());
}

int call_allgather(alibi_comm_t comm, const void* send, void* recv, int64_t bytes_per_rank) {
  return comm->ops.allgather(comm->user, send, recv, bytes_per_rank);
}

// One alltoallv, the same on every rank (drawn from the round's seed): counts[from][to] bytes,
// some zero, rank 1 sending nothing; each rank's blocks lie in its buffers in a shuffled order
// with gaps between them.
struct Exchange {
  int round;
  int size;
  std::vector<std::vector<int64_t>> counts;
  std::vector<int64_t> send_displs, recv_displs;  // this rank's
  int64_t send_bytes = 0, recv_bytes = 0;

  Exchange(int round_, int64_t max_count, int rank) : round(round_), size(world_size()) {
    std::mt19937_64 rng(uint64_t(round) * 7919u);
    std::uniform_int_distribution<int64_t> count(0, max_count);
    counts.assign(size_t(size), std::vector<int64_t>(size_t(size)));
    for (int from = 0; from < size; ++from)
      for (int to = 0; to < size; ++to)
        counts[from][to] = (from == 1 || rng() % 4 == 0) ? 0 : count(rng);
    std::vector<int64_t> sends(static_cast<size_t>(size)), recvs(static_cast<size_t>(size));
    for (int r = 0; r < size; ++r) {
      sends[r] = counts[rank][r];
      recvs[r] = counts[r][rank];
    }
    send_displs = layout(sends, rng, &send_bytes);
    recv_displs = layout(recvs, rng, &recv_bytes);
  }

  // Displacements of the blocks in a shuffled order with gaps of 0..16 bytes; *total: the extent.
  static std::vector<int64_t> layout(const std::vector<int64_t>& sizes, std::mt19937_64& rng,
                                     int64_t* total) {
    std::vector<size_t> order(sizes.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::shuffle(order.begin(), order.end(), rng);
    std::vector<int64_t> displs(sizes.size());
    int64_t at = 0;
    for (size_t r : order) {
      at += int64_t(rng() % 17);
      displs[r] = at;
      at += sizes[r];
    }
    *total = at + int64_t(rng() % 17);
    return displs;
  }

  std::vector<uint8_t> send_buffer(int rank) const {
    std::vector<uint8_t> send(size_t(send_bytes), kPoison);
    for (int to = 0; to < size; ++to)
      for (int64_t i = 0; i < counts[rank][to]; ++i)
        send[size_t(send_displs[to] + i)] = payload(round, rank, to, i);
    return send;
  }

  // What recv must hold: every block from its sender, the poison everywhere else.
  std::vector<uint8_t> expected_recv(int rank) const {
    std::vector<uint8_t> recv(size_t(recv_bytes), kPoison);
    for (int from = 0; from < size; ++from)
      for (int64_t i = 0; i < counts[from][rank]; ++i)
        recv[size_t(recv_displs[from] + i)] = payload(round, from, rank, i);
    return recv;
  }

  std::vector<int64_t> send_counts(int rank) const { return counts[rank]; }
  std::vector<int64_t> recv_counts(int rank) const {
    std::vector<int64_t> c(static_cast<size_t>(size));
    for (int r = 0; r < size; ++r) c[r] = counts[r][rank];
    return c;
  }

  // Runs it on comm and compares every byte of both buffers.
  void run_and_check(alibi_comm_t comm, int rank) const {
    const std::vector<uint8_t> send = send_buffer(rank);
    const std::vector<uint8_t> sent = send;
    std::vector<uint8_t> recv(size_t(recv_bytes), kPoison);
    ASSERT_EQ(call_alltoallv(comm, send.data(), send_counts(rank), send_displs, recv.data(),
                             recv_counts(rank), recv_displs),
              0)
        << alibi_mpi_last_error_message();
    EXPECT_EQ(send, sent) << "the send buffer changed";
    const std::vector<uint8_t> expected = expected_recv(rank);
    int64_t wrong = 0, first = -1;
    for (size_t i = 0; i < recv.size(); ++i)
      if (recv[i] != expected[i]) {
        if (first < 0) first = int64_t(i);
        ++wrong;
      }
    EXPECT_EQ(wrong, 0) << "round " << round << ": " << wrong << " of " << recv.size()
                        << " received bytes wrong, the first at offset " << first;
  }
};

TEST(MpiAdapter, RankAndSizeAreMpis) {
  MpiComm world;
  int rank = -1, size = -1;
  ASSERT_EQ(alibi_comm_get_rank(world.get(), &rank), ALIBI_STATUS_SUCCESS);
  ASSERT_EQ(alibi_comm_get_size(world.get(), &size), ALIBI_STATUS_SUCCESS);
  EXPECT_EQ(rank, world_rank());
  EXPECT_EQ(size, world_size());

  // A split in reverse order: ranks that differ from the world's.
  MPI_Comm half;
  ASSERT_EQ(MPI_Comm_split(MPI_COMM_WORLD, world_rank() % 2, -world_rank(), &half), MPI_SUCCESS);
  int half_rank = -1, half_size = -1;
  MPI_Comm_rank(half, &half_rank);
  MPI_Comm_size(half, &half_size);
  {
    MpiComm comm(half);
    ASSERT_EQ(alibi_comm_get_rank(comm.get(), &rank), ALIBI_STATUS_SUCCESS);
    ASSERT_EQ(alibi_comm_get_size(comm.get(), &size), ALIBI_STATUS_SUCCESS);
    EXPECT_EQ(rank, half_rank);
    EXPECT_EQ(size, half_size);
  }
  MPI_Comm_free(&half);
}

TEST(MpiAdapter, AlltoallvMovesExactlyTheBytes) {
  MpiComm comm;
  for (int round = 0; round < 12; ++round) {
    SCOPED_TRACE(round);
    Exchange(round, 1000, world_rank()).run_and_check(comm.get(), world_rank());
  }
  // Past the eager limit of shared memory and TCP transports.
  Exchange(99, 300000, world_rank()).run_and_check(comm.get(), world_rank());
}

TEST(MpiAdapter, AllgatherGathersInRankOrder) {
  MpiComm comm;
  const int rank = world_rank(), size = world_size();
  for (int64_t bytes : {int64_t(0), int64_t(1), int64_t(13), int64_t(200003)}) {
    SCOPED_TRACE(bytes);
    std::vector<uint8_t> send(static_cast<size_t>(bytes));
    for (int64_t i = 0; i < bytes; ++i) send[size_t(i)] = payload(7, rank, 0, i);
    const int64_t tail = 9;  // past the gathered bytes: must stay untouched
    std::vector<uint8_t> recv(size_t(size * bytes + tail), kPoison);
    ASSERT_EQ(call_allgather(comm.get(), send.data(), recv.data(), bytes), 0)
        << alibi_mpi_last_error_message();
    std::vector<uint8_t> expected(recv.size(), kPoison);
    for (int from = 0; from < size; ++from)
      for (int64_t i = 0; i < bytes; ++i) expected[size_t(from * bytes + i)] = payload(7, from, 0, i);
    EXPECT_TRUE(recv == expected);
  }
}

// Every rank passes the same out-of-range value (to every peer), so every rank refuses it
// before entering MPI.
TEST(MpiAdapter, CountsBeyondIntAreRefused) {
  MpiComm comm;
  const size_t size = size_t(world_size());
  const std::vector<int64_t> zeros(size, 0), ones(size, 1);
  const int64_t above = int64_t(INT_MAX) + 1;
  struct Case {
    const char* name;
    std::vector<int64_t> send_counts, send_displs, recv_counts, recv_displs;
    std::string value;
  };
  const std::vector<Case> cases = {
      {"send_counts", std::vector<int64_t>(size, above), zeros, ones, zeros, "2147483648"},
      {"send_displs", ones, std::vector<int64_t>(size, above), ones, zeros, "2147483648"},
      {"send_displs", ones, std::vector<int64_t>(size, -1), ones, zeros, "-1"},
      {"recv_counts", ones, zeros, std::vector<int64_t>(size, -5), zeros, "-5"},
      {"recv_displs", ones, zeros, ones, std::vector<int64_t>(size, INT64_MAX),
       "9223372036854775807"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    std::vector<uint8_t> send(size, 1), recv(size, kPoison);
    const int result = call_alltoallv(comm.get(), send.data(), c.send_counts, c.send_displs,
                                      recv.data(), c.recv_counts, c.recv_displs);
    EXPECT_EQ(result, ALIBI_MPI_COUNT_OUT_OF_RANGE);
    expect_adapter_message("alltoallv", c.name,
                         {c.value, "INT_MAX"});
    EXPECT_EQ(recv, std::vector<uint8_t>(size, kPoison));
  }
  for (int64_t bytes : {above, int64_t(-1)}) {
    std::vector<uint8_t> recv(size, kPoison);
    EXPECT_EQ(call_allgather(comm.get(), recv.data(), recv.data(), bytes),
              ALIBI_MPI_COUNT_OUT_OF_RANGE);
    expect_adapter_message("allgather", "bytes_per_rank", {std::to_string(bytes)});
    EXPECT_EQ(recv, std::vector<uint8_t>(size, kPoison));
  }
  // The communicator still works, and a success clears the message.
  Exchange(5, 100, world_rank()).run_and_check(comm.get(), world_rank());
  EXPECT_STREQ(alibi_mpi_last_error_message(), "");
}

TEST(MpiAdapter, BadInput) {
  alibi_comm_t comm = reinterpret_cast<alibi_comm_t>(uintptr_t(0xdeadbeef));
  expect_adapter_error(alibi_comm_create_mpi(MPI_COMM_NULL, &comm),
                       ALIBI_STATUS_INVALID_ARGUMENT, "comm",
                       {"MPI_COMM_NULL"});
  EXPECT_EQ(comm, nullptr);
  expect_adapter_error(alibi_comm_create_mpi(MPI_COMM_WORLD, nullptr),
                       ALIBI_STATUS_NULL_POINTER, "out", {"NULL"});
  if (world_size() < 2) return;  // an intercommunicator needs two groups
  MPI_Comm half, inter;
  const int color = world_rank() % 2;
  ASSERT_EQ(MPI_Comm_split(MPI_COMM_WORLD, color, 0, &half), MPI_SUCCESS);
  ASSERT_EQ(MPI_Intercomm_create(half, 0, MPI_COMM_WORLD, 1 - color, 0, &inter), MPI_SUCCESS);
  comm = reinterpret_cast<alibi_comm_t>(uintptr_t(0xdeadbeef));
  expect_adapter_error(alibi_comm_create_mpi(inter, &comm), ALIBI_STATUS_INVALID_ARGUMENT, "comm",
                       {"intercommunicator"});
  EXPECT_EQ(comm, nullptr);
  MPI_Comm_free(&inter);
  MPI_Comm_free(&half);
}

TEST(CountingComm, CountsEveryPeersBytesAndForwards) {
  MpiComm mpi;
  const int rank = world_rank(), size = world_size();
  test::CountingComm counting(mpi.get());
  ASSERT_NE(counting.get(), nullptr) << alibi_last_error_message();
  int got = -1;
  ASSERT_EQ(alibi_comm_get_rank(counting.get(), &got), ALIBI_STATUS_SUCCESS);
  EXPECT_EQ(got, rank);
  ASSERT_EQ(alibi_comm_get_size(counting.get(), &got), ALIBI_STATUS_SUCCESS);
  EXPECT_EQ(got, size);

  const Exchange exchange(3, 500, rank);
  exchange.run_and_check(counting.get(), rank);
  const std::vector<uint8_t> mine(5, uint8_t(rank));
  std::vector<uint8_t> gathered(size_t(size) * 5);
  ASSERT_EQ(call_allgather(counting.get(), mine.data(), gathered.data(), 5), 0);
  for (int r = 0; r < size; ++r)
    EXPECT_EQ(gathered[size_t(r) * 5 + 4], uint8_t(r)) << "from rank " << r;

  ASSERT_EQ(counting.collectives().size(), 2u);
  const test::CollectiveBytes& a = counting.collectives()[0];
  EXPECT_EQ(a.kind, test::CollectiveBytes::Kind::alltoallv);
  EXPECT_EQ(a.sent, exchange.send_counts(rank));
  EXPECT_EQ(a.received, exchange.recv_counts(rank));
  const test::CollectiveBytes& g = counting.collectives()[1];
  EXPECT_EQ(g.kind, test::CollectiveBytes::Kind::allgather);
  EXPECT_EQ(g.sent, std::vector<int64_t>(size_t(size), 5));
  EXPECT_EQ(g.received_from_others(rank), 5 * (size - 1));

  int64_t from_others = 5 * (size - 1), to_others = 5 * (size - 1);
  for (int r = 0; r < size; ++r)
    if (r != rank) {
      from_others += exchange.counts[r][rank];
      to_others += exchange.counts[rank][r];
    }
  EXPECT_EQ(counting.received_from_others(), from_others);
  EXPECT_EQ(counting.sent_to_others(), to_others);
}

// alibi_comm_create_mpi without MPI: before MPI_Init and after MPI_Finalize.
bool refused_without_mpi(const char* when, const char* value) {
  alibi_comm_t comm = nullptr;
  const alibi_status status = alibi_comm_create_mpi(MPI_COMM_WORLD, &comm);
  const std::string message = alibi_mpi_last_error_message();
  const bool ok = status == ALIBI_STATUS_INVALID_ARGUMENT && comm == nullptr &&
                  test::contains_identifier(message, "alibi_comm_create_mpi") &&
                  test::shows_value(message, value);
  if (!ok)
    std::fprintf(stderr, "%s: alibi_comm_create_mpi gave %s (%s), expected invalid argument\n",
                 when, alibi_status_string(status), message.c_str());
  alibi_comm_destroy(comm);
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  bool ok = refused_without_mpi("before MPI_Init", "not initialized");
  MPI_Init(&argc, &argv);
  const int rank = world_rank(), size = world_size();
  if (rank != 0) GTEST_FLAG_SET(brief, true);  // the other ranks print their failures only
  ::testing::InitGoogleTest(&argc, argv);
  // A communicator destroyed after MPI_Finalize: its duplicate is not freed then.
  alibi_comm_t late = nullptr;
  ok = alibi_comm_create_mpi(MPI_COMM_WORLD, &late) == ALIBI_STATUS_SUCCESS && ok;
  ok = RUN_ALL_TESTS() == 0 && ok;
  int failed_here = ok ? 0 : 1, failed_anywhere = 0;
  MPI_Allreduce(&failed_here, &failed_anywhere, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  alibi_comm_destroy(late);
  if (!refused_without_mpi("after MPI_Finalize", "finalized")) failed_anywhere = 1;
  if (rank == 0)
    std::printf("test_comm_mpi: %d ranks: %s\n", size, failed_anywhere ? "FAIL" : "PASS");
  return failed_anywhere;
}
