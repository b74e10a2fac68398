package org.alibi;

import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.security.CodeSource;

/**
 * Loads the JNI library libalibi_java (which finds libalibi beside itself), trying in order:
 * (1) the file named by the system property alibi.library.path; (2) the installed layout's lib
 * folder, relative to the folder of the jar holding this class; (3) System.loadLibrary, that is
 * java.library.path.
 */
final class NativeLibrary {
  static final String PATH_PROPERTY = "alibi.library.path";
  private static final String NAME = "alibi_java";

  private NativeLibrary() {}

  static void load() {
    String explicit = System.getProperty(PATH_PROPERTY);
    if (explicit != null && !explicit.isEmpty()) {
      System.load(Paths.get(explicit).toAbsolutePath().toString());
      return;
    }
    Path installed = installedBesideJar();
    if (installed != null && Files.isRegularFile(installed)) {
      System.load(installed.toString());
      return;
    }
    try {
      System.loadLibrary(NAME);
    } catch (UnsatisfiedLinkError e) {
      UnsatisfiedLinkError explained = new UnsatisfiedLinkError(System.mapLibraryName(NAME)
          + " not found: not at " + (installed == null ? "(no jar location)" : installed)
          + " (relative to the jar), nor in java.library.path ("
          + System.getProperty("java.library.path") + "); set -D" + PATH_PROPERTY + "=<file>");
      explained.initCause(e);
      throw explained;
    }
  }

  /** Where an installation puts the library, seen from this class's jar; null outside a jar. */
  private static Path installedBesideJar() {
    try {
      CodeSource source = NativeLibrary.class.getProtectionDomain().getCodeSource();
      if (source == null || source.getLocation() == null) return null;
      Path jar = Paths.get(source.getLocation().toURI());
      if (!Files.isRegularFile(jar)) return null;
      return jar.toAbsolutePath().getParent().resolve(InstallLayout.LIBDIR_FROM_JAR_DIR)
          .resolve(System.mapLibraryName(NAME)).normalize();
    } catch (URISyntaxException | IllegalArgumentException | SecurityException e) {
      return null;  // not a local file: only java.library.path is left
    }
  }
}
