// What both paged benchmarks (alibi-bench's paged cases, alibi-ab --block-size) build: a pool of
// exactly the blocks a batch's sequences use, handed out in a shuffled order (a fixed seed), and
// the contiguous k (or v) of the batch copied into it as the table places them.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "attention_shape.h"

namespace bench_common {

struct BlockTable {
  int64_t num_blocks = 0, max_blocks = 0;  // the pool's blocks; a row's
  std::vector<int32_t> ids;                // (batch, max_blocks), -1 past a sequence's blocks
};

inline int64_t blocks_of(int32_t keys, int block_size) { return (int64_t(keys) + block_size - 1) / block_size; }

inline BlockTable shuffled_block_table(const std::vector<int32_t>& lengths_k, int block_size) {
  BlockTable table;
  for (int32_t keys : lengths_k) {
    table.num_blocks += blocks_of(keys, block_size);
    table.max_blocks = std::max(table.max_blocks, blocks_of(keys, block_size));
  }
  std::vector<int32_t> free_blocks(size_t(table.num_blocks));
  std::iota(free_blocks.begin(), free_blocks.end(), 0);
  std::shuffle(free_blocks.begin(), free_blocks.end(), std::mt19937(17));
  table.ids.assign(lengths_k.size() * size_t(table.max_blocks), -1);
  size_t next = 0;
  for (size_t b = 0; b < lengths_k.size(); ++b)
    for (int64_t j = 0; j < blocks_of(lengths_k[b], block_size); ++j)
      table.ids[b * size_t(table.max_blocks) + size_t(j)] = free_blocks[next++];
  return table;
}

// A block a sequence uses: its id in the pool, and the sequence's keys [first_key, first_key +
// keys) that it holds.
struct UsedBlock {
  size_t sequence;
  int64_t first_key, keys;
  int32_t id;
};

// Each sequence's blocks, sequence by sequence, in table order.
inline std::vector<UsedBlock> blocks_in_table_order(const std::vector<int32_t>& lengths_k, int block_size,
                                                    const BlockTable& table) {
  std::vector<UsedBlock> blocks;
  for (size_t b = 0; b < lengths_k.size(); ++b)
    for (int64_t first = 0, j = 0; first < lengths_k[b]; first += block_size, ++j)
      blocks.push_back({b, first, std::min<int64_t>(block_size, lengths_k[b] - first),
                        table.ids[b * size_t(table.max_blocks) + size_t(j)]});
  return blocks;
}

// The pool (num_blocks, block_size, token) of `contiguous` (total_k tokens of token_bytes each);
// the rows past a sequence's last key are zero.
inline std::vector<unsigned char> fill_pool(const std::vector<int32_t>& lengths_k, int block_size,
                                            size_t token_bytes, const BlockTable& table,
                                            const std::vector<unsigned char>& contiguous) {
  const size_t block_bytes = token_bytes * size_t(block_size);
  std::vector<unsigned char> pool(size_t(table.num_blocks) * block_bytes);
  const std::vector<int32_t> cu_k = prefix_sums(lengths_k);
  for (const UsedBlock& block : blocks_in_table_order(lengths_k, block_size, table)) {
    const unsigned char* source = contiguous.data() + size_t(cu_k[block.sequence] + block.first_key) * token_bytes;
    std::memcpy(pool.data() + size_t(block.id) * block_bytes, source, size_t(block.keys) * token_bytes);
  }
  return pool;
}

}  // namespace bench_common
