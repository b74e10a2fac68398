/**
 * ALiBi attention (libalibi) for Java: {@link org.alibi.Context} runs calls, {@link
 * org.alibi.Mask} says which (query, key) cells are visible, {@link org.alibi.Tensor} holds data
 * (or {@code float[]} and direct {@code FloatBuffer} forms of forward, backward and merge use
 * yours in place). {@link org.alibi.Context#backward(float[], float[], float[], int, int, int,
 * Mask, AttentionParams, float[], float[], float[], float[], float[], float[], float[]) backward}
 * gives the gradients of q, k, v and the ALiBi slopes, for training.
 *
 * <p>The JNI library libalibi_java is loaded on first use from (1) the file named by the system
 * property {@code alibi.library.path}, else (2) the installed lib folder, relative to the folder
 * of this jar (an install puts the jar in {@code share/java} and the library in {@code lib}),
 * else (3) {@code java.library.path}.
 *
 * <p>Contexts, masks and tensors are {@link java.lang.AutoCloseable}: close them
 * (try-with-resources) to release native memory at once; one left unclosed is released by a
 * {@link java.lang.ref.Cleaner} once unreachable. close() is idempotent; using a closed object
 * throws {@link java.lang.IllegalStateException}, a null argument {@link
 * java.lang.NullPointerException} naming it, and a failed library call {@link
 * org.alibi.AlibiException} naming the call and the argument.
 */
package org.alibi;
