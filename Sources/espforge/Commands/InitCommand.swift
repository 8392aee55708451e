import ArgumentParser
import Manifest

struct InitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init", abstract: "Write a production manifest (espforge.toml) from an ESP-IDF build directory.",
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

    @Option(help: "ESP-IDF build directory (the one holding flasher_args.json).") var buildDir: String = "build"
    @Option(name: .shortAndLong, help: "Manifest to write.") var output: String = "espforge.toml"
    @Flag(help: "Overwrite an existing manifest.") var force = false

    func run() throws {
        let written = try ManifestInit.write(buildDir: buildDir, output: output, force: force)
        for note in written.build.notes { ErrorRenderer.warn(note) }
        print(written.summary)
    }
}
