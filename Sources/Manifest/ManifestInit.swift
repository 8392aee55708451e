import ESPCore
import Foundation

/// `espforge init` as a library call: an annotated production manifest written from an ESP-IDF
/// build directory (flasher_args.json and the project's sdkconfig), paths relative to the
/// manifest's folder. The text is parsed back before it is written (a self-check of the writer).
public enum ManifestInit {
    /// What was written.
    public struct Written: Sendable {
        public var path: String
        public var manifest: Manifest
        public var build: IDFBuild
        /// `wrote PATH: esp32, 4MB flash, secure boot v2, flash encryption …, N images`.
        public var summary: String {
            "wrote \(path): \(manifest.chip.type), \(manifest.chip.flashSize >> 20)MB flash, "
                + "secure boot \(build.secureBootV2 ? "v2" : "off"), flash encryption \(manifest.flashEncryption.mode.rawValue), "
                + "\(manifest.images.all.count) images"
        }
    }

    /// Reads `buildDir` and writes the manifest to `output` (refused when it exists, unless `force`).
    /// The build's notes are in the manifest's header and in ``Written/build``.
    public static func write(buildDir: String, output: String, force: Bool) throws -> Written {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: buildDir, isDirectory: &isDir), isDir.boolValue else {
            throw UsageError(Diagnostic("no such directory", file: buildDir, hint: "run `idf.py build`, then pass its build folder"))
        }
        if fm.fileExists(atPath: output) && !force {
            throw UsageError(Diagnostic("already exists", file: output, hint: "pass --force to overwrite it"))
        }
        let base = URL(fileURLWithPath: buildDir)
        let build: IDFBuild
        do {
            build = try IDFBuild.read { relative in
                try? readIfPresent(base.appendingPathComponent(relative).path)
            }
        } catch {
            var d = error.diagnostic
            d.file = base.appendingPathComponent(error.file).path
            throw UsageError(d)
        }
        let outDir = URL(fileURLWithPath: output).deletingLastPathComponent().standardizedFileURL.path
        let relBuild = IDFBuild.relativePath(from: outDir, to: base.standardizedFileURL.path)
        let manifest = build.manifest(buildDir: relBuild)
        let text = manifest.toml(header: [
            "espforge production manifest, written by `espforge init --build-dir \(buildDir)`.",
            "Paths are relative to this file. See README: Manifest (espforge.toml).",
        ] + build.notes.map { "note: " + $0 })
        _ = try Manifest.parse(text)
        try AtomicFile.write(Array(text.utf8), to: output, mode: AtomicFile.publicMode)
        return Written(path: output, manifest: manifest, build: build)
    }

    static func readIfPresent(_ path: String) throws -> [UInt8]? {
        do { return try BoundedFile.read(path, limit: .flashContents) } catch where error.reason == .missing { return nil }
    }
}
