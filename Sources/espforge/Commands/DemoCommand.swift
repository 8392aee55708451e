import ArgumentParser
import Foundation
import ProductionLine

struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo", abstract: "Provision a tray of virtual ESP32s (or ESP32-S3s, ESP32-C3s) end to end, with nothing but espforge.",
        discussion: """
            Creates everything in --dir: N virtual ESP32 rev 3 devices (--chip esp32s3 / esp32c3: \
            ESP32-S3 / ESP32-C3 at their factory revision) with 4 MB flash, a throwaway \
            RSA-3072 signing key, the seed board's partition table, a bootloader and an app that \
            espforge synthesizes in memory for the chip (not runnable firmware: valid images the \
            boot simulator loads), an sdkconfig with Secure Boot V2 and flash encryption, per-device NVS values \
            (serial numbers), a manifest and a SQLite registry. Then provisions all devices in \
            parallel (`espforge provision`) and prints the summary, the registry and how to inspect \
            a device. No hardware and no files are needed.

            Example:
              espforge demo --devices 4 --dir demo-out
              espforge demo --chip esp32c3 --mode on-chip --dir demo-c3
            """
    )

    @Option(help: "How many virtual devices.") var devices: Int = 4
    @Option(help: "Folder for the devices, key, images, manifest and registry (an earlier demo's files in it are replaced; other files stay).")
    var dir: String = "demo-out"

    @Option(help: "The chip: esp32, esp32s3 or esp32c3.") var chip: String = "esp32"
    @Option(help: "Flash encryption mode: host or on-chip.") var mode: String = "host"
    @Option(name: .customLong("app-size"), help: "Size of the synthesized app's code, e.g. 96K or 1MB (it must fit the 1.6 MB ota_0 partition).")
    var appSize: String = "96K"

    @Flag(help: "Hold each device's result until its virtual provisioning time (flash writes and first boot, time model) has passed in real time.") var realtime = false
    @Flag(help: "One JSON event per line.") var json = false

    func run() async throws {
        let options = try DemoLine.Options(devices: devices, dir: dir, mode: mode, appSize: appSize, chip: chip)
        // Only what a demo wrote is replaced (see DemoFolder); unrelated files stay.
        try DemoLine.prepare(options)
        // Same channel as the provisioning progress lines (unbuffered), so the order holds.
        let say: (String) -> Void = { text in if !json { FileHandle.standardOutput.write(Data((text + "\n").utf8)) } }
        say("espforge demo: \(DemoLine.headline(options)) in \(dir)/")
        let line = try DemoLine.create(options)
        say("  key: \(dir)/signing_key.pem (throwaway RSA-3072)  images: bootloader.bin, partition-table.bin, app.bin")
        say("  manifest: \(dir)/espforge.toml (flash encryption \(mode), Secure Boot V2)\n")

        let loaded = try ProvisionSetup.load(manifestPath: line.manifestPath)
        let code = try await ProvisionRun.run(loaded, ports: line.ports, registryURL: loaded.registryURL, resume: false,
                                              json: json, realtime: realtime)
        say("""

            registry: \(loaded.registryURL ?? "?")   (espforge registry list --registry \(loaded.registryURL ?? "?"))
            inspect a device:
              espforge device inspect --state \(dir)/devices/dev1
              espforge device boot --state \(dir)/devices/dev1
            """)
        if code != 0 { throw ExitCode(code) }
    }
}
