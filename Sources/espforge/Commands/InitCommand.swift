import ArgumentParser
import ESPCore
import Foundation
import Manifest

struct InitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Write a production manifest (espforge.toml) from an ESP-IDF build directory.",
        discussion: """
            Reads the build directory's flasher_args.json (images and offsets) and the project's \
            sdkconfig (chip, flash size — flasher_args.json says `keep` under Secure Boot V2 — flash \
            mode and frequency, minimum chip revision, Secure Boot V2, flash encryption and its \
            UART download settings, the custom partition CSV) and writes an annotated manifest. \
            Paths in the manifest are relative to the manifest's folder. It provisions as written \
            (without [nvs] there is nothing to claim and each device's identity is its MAC). Review \
            it before use: add [nvs] for per-device values, choose the flash encryption mode \
            (on-chip as built, or host) and the registry.

            Example:
              espforge init --build-dir build -o espforge.toml
            """
    )

    @Option(help: "ESP-IDF build directory (the one holding flasher_args.json).")
    var buildDir: String = "build"

    @Option(name: .shortAndLong, help: "Manifest to write.")
    var output: String = "espforge.toml"

    @Flag(help: "Overwrite an existing manifest.")
    var force = false

    func run() throws {
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
                try? FileIO.readIfPresent(base.appendingPathComponent(relative).path, limit: .flashContents)
            }
        } catch {
            var d = error.diagnostic
            d.file = base.appendingPathComponent(error.file).path
            throw UsageError(d)
        }
        let outDir = URL(fileURLWithPath: output).deletingLastPathComponent().standardizedFileURL.path
        let buildAbs = base.standardizedFileURL.path
        let relBuild = IDFBuild.relativePath(from: outDir, to: buildAbs)
        let manifest = build.manifest(buildDir: relBuild)
        let text = manifest.toml(header: [
            "espforge production manifest, written by `espforge init --build-dir \(buildDir)`.",
            "Paths are relative to this file. See README: Manifest (espforge.toml).",
        ] + build.notes.map { "note: " + $0 })
        // What we write must read back: a self-check of the writer.
        _ = try Manifest.parse(text)
        try FileIO.write(text, to: output)
        for note in build.notes { ErrorRenderer.warn(note) }
        print("wrote \(output): \(manifest.chip.type), \(manifest.chip.flashSize >> 20)MB flash, " +
              "secure boot \(build.secureBootV2 ? "v2" : "off"), flash encryption \(manifest.flashEncryption.mode.rawValue), " +
              "\(manifest.images.all.count) images")
    }
}
