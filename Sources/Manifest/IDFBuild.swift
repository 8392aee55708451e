import ESPCore
import Foundation

/// What an ESP-IDF build directory says about the firmware: its images and offsets
/// (`flasher_args.json`), flash settings and security configuration (`sdkconfig`), and the
/// partition CSV. Under Secure Boot V2 `flasher_args.json` reports the flash size as `keep`,
/// so the size comes from `CONFIG_ESPTOOLPY_FLASHSIZE`.
public struct IDFBuild: Sendable, Equatable {
    public var chip: String
    public var flashSize: Int
    public var flashMode: String?
    public var flashFreq: String?
    /// Image paths relative to the build directory.
    public var images: Manifest.Images
    public var sdkconfig: [String: String]
    public var minRevision: Int?
    public var secureBootV2: Bool
    public var signedBinaries: Bool
    public var signingKey: String?
    public var flashEncryption: Bool
    public var flashEncryptionRelease: Bool
    public var nvsEncryption: Bool
    /// Partition CSV path relative to the project folder (custom tables only).
    public var partitionsCSV: String?
    /// The project folder, relative to the build directory (".." unless project_description.json says otherwise).
    public var projectDir: String
    /// The sdkconfig that was read, relative to the build directory (e.g. `../sdkconfig`).
    public var sdkconfigFile: String = "sdkconfig"
    /// That sdkconfig as read (values, the line of each, the ESP-IDF version from its header):
    /// what the boot simulator's configuration is built from (`SDKConfig(values:)` in BootSimulator),
    /// so `provision` never parses the file a second way.
    public var sdkconfigValues = SDKConfigValues()
    /// Things the reader noticed and the user should know.
    public var notes: [String]

    /// `sdkconfig` text: `CONFIG_X=y`, `CONFIG_X="text"`, `CONFIG_X=123`, `# CONFIG_X is not set`
    /// (``SDKConfigValues``' rules: the one sdkconfig parser).
    public static func parseSdkconfig(_ text: String) -> [String: String] { SDKConfigValues.parse(text: text).values }

    /// Reads the build directory through `readFile(relativePath)` (relative to the build directory,
    /// `..` allowed; nil when the file does not exist), so the core does no I/O of its own.
    public static func read(readFile: (String) -> [UInt8]?) throws(IDFBuildError) -> IDFBuild {
        guard let argsBytes = readFile("flasher_args.json") else {
            throw IDFBuildError("no flasher_args.json in the build directory", file: "flasher_args.json",
                                hint: "point --build-dir at the folder `idf.py build` wrote (usually `build`)")
        }
        guard let json = try? JSONSerialization.jsonObject(with: Data(argsBytes)), let args = json as? [String: Any] else {
            throw IDFBuildError("flasher_args.json is not a JSON object", file: "flasher_args.json")
        }
        var notes: [String] = []

        let projectDir = SDKConfigLookup.projectFolder(projectDescription: readFile("project_description.json"))
        // One lookup for every reader of a build folder (see SDKConfigLookup for the order).
        var sdk: [String: String] = [:]
        guard let found = SDKConfigLookup.find(read: readFile) else {
            throw IDFBuildError("no sdkconfig found beside the build directory", file: projectDir + "/sdkconfig",
                                hint: "the flash size and security settings come from the project's sdkconfig")
        }
        guard let parsed = found.parsed() else {
            throw IDFBuildError("\(found.path) is not a JSON object", file: found.path)
        }
        sdk = parsed.values
        let sdkconfigFile = found.path
        func yes(_ k: String) -> Bool { sdk[k] == "y" }

        let settings = args["flash_settings"] as? [String: Any] ?? [:]
        let extra = args["extra_esptool_args"] as? [String: Any] ?? [:]
        let chip = (extra["chip"] as? String) ?? sdk["CONFIG_IDF_TARGET"] ?? "esp32"

        var flashSize: Int?
        if let s = sdk["CONFIG_ESPTOOLPY_FLASHSIZE"] { flashSize = NumberParsing.size(s) }
        if flashSize == nil, let s = settings["flash_size"] as? String, s != "keep", s != "detect" {
            flashSize = NumberParsing.size(s)
        }
        guard let flashSize else {
            throw IDFBuildError("the flash size is not known: flasher_args.json says `keep` and sdkconfig has no CONFIG_ESPTOOLPY_FLASHSIZE",
                                file: "sdkconfig", hint: "set the flash size in menuconfig (Serial flasher config)")
        }
        guard flashSize >= 1 << 20, flashSize <= 128 << 20, flashSize & (flashSize - 1) == 0 else {
            throw IDFBuildError("flash size \(flashSize) bytes is not a power of two from 1MB to 128MB", file: "sdkconfig",
                                hint: "check CONFIG_ESPTOOLPY_FLASHSIZE")
        }
        guard Manifest.chipTypes.contains(chip) else {
            throw IDFBuildError("chip `\(chip)` is not supported", file: "flasher_args.json",
                                hint: "espforge handles " + Manifest.chipTypes.joined(separator: ", "))
        }
        func known(_ value: String?, _ list: [String], _ what: String) -> String? {
            guard let value, value != "keep" else { return nil }
            if list.contains(value) { return value }
            notes.append("ignoring unknown flash \(what) `\(value)`")
            return nil
        }
        let mode = known((settings["flash_mode"] as? String).flatMap { $0 == "keep" ? nil : $0 } ?? sdk["CONFIG_ESPTOOLPY_FLASHMODE"],
                         Manifest.flashModes, "mode")
        let freq = known((settings["flash_freq"] as? String).flatMap { $0 == "keep" ? nil : $0 } ?? sdk["CONFIG_ESPTOOLPY_FLASHFREQ"],
                         Manifest.flashFreqs, "frequency")

        func entry(_ key: String) throws(IDFBuildError) -> Manifest.ImageRef? {
            guard let e = args[key] as? [String: Any] else { return nil }
            guard let file = e["file"] as? String, !file.isEmpty, let offText = e["offset"] as? String,
                  let off = NumberParsing.integer(offText) else {
                throw IDFBuildError("entry `\(key)` needs \"file\" and \"offset\"", file: "flasher_args.json")
            }
            return Manifest.ImageRef(path: file, offset: off)
        }
        var images = Manifest.Images()
        images.bootloader = try entry("bootloader")
        images.partitionTable = try entry("partition-table")
        images.app = try entry("app")
        images.otadata = try entry("otadata")
        // Older/partial files: fall back to flash_files, recognising images by file name.
        if let files = args["flash_files"] as? [String: String] {
            for (offText, file) in files {
                guard let off = NumberParsing.integer(offText) else { continue }
                let ref = Manifest.ImageRef(path: file, offset: off)
                if file.hasSuffix("bootloader.bin"), images.bootloader == nil { images.bootloader = ref }
                else if file.contains("partition-table"), images.partitionTable == nil { images.partitionTable = ref }
                else if file.contains("ota_data_initial"), images.otadata == nil { images.otadata = ref }
            }
        }
        if images.bootloader == nil, readFile("bootloader/bootloader.bin") != nil {
            let off = sdk["CONFIG_BOOTLOADER_OFFSET_IN_FLASH"].flatMap(NumberParsing.integer) ?? (chip == "esp32" ? 0x1000 : 0)
            images.bootloader = Manifest.ImageRef(path: "bootloader/bootloader.bin", offset: off)
            notes.append("flasher_args.json does not list the bootloader (Secure Boot builds flash it separately); using bootloader/bootloader.bin at \(NumberParsing.hex(off, width: 0))")
        }
        guard images.app != nil else {
            throw IDFBuildError("flasher_args.json names no app image", file: "flasher_args.json", hint: "run `idf.py build` first")
        }
        guard images.bootloader != nil else {
            throw IDFBuildError("no bootloader image: neither flasher_args.json nor bootloader/bootloader.bin", file: "flasher_args.json")
        }
        guard images.partitionTable != nil else {
            throw IDFBuildError("flasher_args.json names no partition table", file: "flasher_args.json")
        }
        var offsets: [Int: String] = [:]
        for (name, image) in images.all {
            guard image.offset >= 0, image.offset % 0x1000 == 0, image.offset < flashSize else {
                throw IDFBuildError("image `\(name)` at offset \(image.offset) is not 4 KiB aligned inside the \(flashSize >> 20)MB flash",
                                    file: "flasher_args.json")
            }
            if let other = offsets[image.offset] {
                throw IDFBuildError("images `\(other)` and `\(name)` share offset \(NumberParsing.hex(image.offset, width: 0))", file: "flasher_args.json")
            }
            offsets[image.offset] = name
        }

        var minRevision: Int?
        if let full = sdk["CONFIG_\(chip.uppercased())_REV_MIN_FULL"].flatMap(NumberParsing.integer) { minRevision = full / 100 }
        else if let r = sdk["CONFIG_\(chip.uppercased())_REV_MIN"].flatMap(NumberParsing.integer) { minRevision = r }
        if let r = minRevision, !(0...99).contains(r) {
            notes.append("ignoring minimum chip revision \(r)")
            minRevision = nil
        }

        let sbv2 = yes("CONFIG_SECURE_BOOT_V2_ENABLED") || (yes("CONFIG_SECURE_BOOT") && yes("CONFIG_SECURE_SIGNED_APPS_RSA_SCHEME"))
        if yes("CONFIG_SECURE_BOOT_V1_ENABLED") {
            notes.append("the project uses Secure Boot V1, which espforge does not provision; only V2 is supported")
        }
        let flashEnc = yes("CONFIG_SECURE_FLASH_ENC_ENABLED")
        var partitionsCSV: String?
        if yes("CONFIG_PARTITION_TABLE_CUSTOM") {
            partitionsCSV = (sdk["CONFIG_PARTITION_TABLE_CUSTOM_FILENAME"] ?? sdk["CONFIG_PARTITION_TABLE_FILENAME"]).flatMap { $0.isEmpty ? nil : $0 }
        }
        var build = IDFBuild(chip: chip, flashSize: flashSize, flashMode: mode, flashFreq: freq, images: images, sdkconfig: sdk,
                        minRevision: minRevision, secureBootV2: sbv2,
                        signedBinaries: yes("CONFIG_SECURE_BOOT_BUILD_SIGNED_BINARIES"),
                        signingKey: sdk["CONFIG_SECURE_BOOT_SIGNING_KEY"].flatMap { $0.isEmpty ? nil : $0 },
                        flashEncryption: flashEnc, flashEncryptionRelease: yes("CONFIG_SECURE_FLASH_ENCRYPTION_MODE_RELEASE"),
                        nvsEncryption: yes("CONFIG_NVS_ENCRYPTION"), partitionsCSV: partitionsCSV, projectDir: projectDir,
                        sdkconfigFile: sdkconfigFile, notes: notes)
        build.sdkconfigValues = parsed
        return build
    }

    /// A manifest for this build. `buildDir` is how the manifest should name the build directory
    /// (relative to the manifest's own folder).
    public func manifest(buildDir: String) -> Manifest {
        func under(_ p: String) -> String { p.hasPrefix("/") ? p : Self.join(buildDir, p) }
        func project(_ p: String) -> String { p.hasPrefix("/") ? p : Self.join(Self.join(buildDir, projectDir), p) }
        var images = Manifest.Images()
        images.bootloader = self.images.bootloader.map { .init(path: under($0.path), offset: $0.offset) }
        images.partitionTable = self.images.partitionTable.map { .init(path: under($0.path), offset: $0.offset) }
        images.app = self.images.app.map { .init(path: under($0.path), offset: $0.offset) }
        images.otadata = self.images.otadata.map { .init(path: under($0.path), offset: $0.offset) }

        var signing: Manifest.Signing?
        if secureBootV2 {
            if signedBinaries { signing = .presigned }
            else { signing = .key(path: project(signingKey ?? "secure_boot_signing_key.pem")) }
        }
        var burn: [String] = []
        func no(_ k: String) -> Bool { sdkconfig[k] != "y" }
        // ESP32 only: on the ESP32-S3/C3 the v5.x bootloader burns the JTAG, download-mode and
        // cache eFuses itself when it enables Secure Boot or release-mode flash encryption
        // (esp_secure_boot_enable_secure_features / esp_flash_encryption_set_release_mode).
        if (secureBootV2 || flashEncryption) && chip == "esp32" {
            if no("CONFIG_SECURE_BOOT_ALLOW_JTAG") { burn.append("JTAG_DISABLE") }
        }
        if secureBootV2 && no("CONFIG_SECURE_BOOT_ALLOW_ROM_BASIC") && chip == "esp32" { burn.append("CONSOLE_DEBUG_DISABLE") }
        if flashEncryption && chip == "esp32" {
            if no("CONFIG_SECURE_FLASH_UART_BOOTLOADER_ALLOW_ENC") { burn.append("DISABLE_DL_ENCRYPT") }
            if no("CONFIG_SECURE_FLASH_UART_BOOTLOADER_ALLOW_DEC") { burn.append("DISABLE_DL_DECRYPT") }
            if no("CONFIG_SECURE_FLASH_UART_BOOTLOADER_ALLOW_CACHE") { burn.append("DISABLE_DL_CACHE") }
        }
        return Manifest(chip: .init(type: chip, minRevision: minRevision, flashSize: flashSize, flashMode: flashMode, flashFreq: flashFreq),
                        buildDir: buildDir, images: images, partitionsCSV: partitionsCSV.map(project), signing: signing,
                        flashEncryption: .init(mode: flashEncryption ? .onChip : .none, release: flashEncryption ? flashEncryptionRelease : true),
                        nvs: nil, efuse: .init(burn: burn, writeProtect: []), registry: .init(), firstBoot: .init())
    }

    /// `b` under folder `a`, with `x/..` and `.` removed where possible.
    public static func join(_ a: String, _ b: String) -> String {
        if a.isEmpty || a == "." { return b }
        let joined = a.hasSuffix("/") ? a + b : a + "/" + b
        return normalize(joined)
    }

    /// Removes `x/..` and `.` components where it can (keeps leading `..`).
    public static func normalize(_ path: String) -> String { SDKConfigLookup.normalize(path) }

    /// Relative path from folder `from` to `to` (both absolute, or both relative to the same place).
    public static func relativePath(from: String, to: String) -> String { SDKConfigLookup.relativePath(from: from, to: to) }
}

public struct IDFBuildError: Error, DiagnosticConvertible, Equatable {
    public var message: String
    public var file: String
    public var hint: String?
    public init(_ message: String, file: String, hint: String? = nil) { self.message = message; self.file = file; self.hint = hint }
    public var diagnostic: Diagnostic { Diagnostic(message, file: file, hint: hint) }
}

extension Manifest {
    /// The manifest with the images it does not list taken from its ESP-IDF build (paths joined
    /// with `buildDir`, so they stay relative to the manifest's folder).
    public func resolvingImages(from build: IDFBuild) -> Manifest {
        var m = self
        let dir = buildDir ?? "."
        func under(_ r: ImageRef?) -> ImageRef? {
            r.map { ImageRef(path: $0.path.hasPrefix("/") ? $0.path : IDFBuild.join(dir, $0.path), offset: $0.offset) }
        }
        if m.images.bootloader == nil { m.images.bootloader = under(build.images.bootloader) }
        if m.images.partitionTable == nil { m.images.partitionTable = under(build.images.partitionTable) }
        if m.images.otadata == nil { m.images.otadata = under(build.images.otadata) }
        if m.images.app == nil { m.images.app = under(build.images.app) }
        return m
    }
}
