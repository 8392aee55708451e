import ESPCore
import Foundation

/// One file the plan writes.
public struct PlanEntry: Sendable {
    public var address: Int
    /// File name as given (for reports).
    public var name: String
    public var bytes: [UInt8]
    /// Written with `--encrypt` (the chip encrypts it on the way in).
    public var encrypted: Bool

    public init(address: Int, name: String, bytes: [UInt8], encrypted: Bool = false) {
        self.address = address
        self.name = name
        self.bytes = bytes
        self.encrypted = encrypted
    }

    public var end: Int { address + bytes.count }
}

/// The flash options the write will use (esptool `write-flash`): `nil` = `keep`.
public struct FlashOptions: Sendable, Equatable, Codable {
    public var mode: String?
    public var frequency: String?
    public var size: String?
    /// `--encrypt`: every file is encrypted by the chip while being written.
    public var encryptAll: Bool

    public init(mode: String? = nil, frequency: String? = nil, size: String? = nil, encryptAll: Bool = false) {
        self.mode = mode
        self.frequency = frequency
        self.size = size
        self.encryptAll = encryptAll
    }

    /// Normalises `keep` (any case) and empty strings to nil.
    public static func value(_ text: String?) -> String? {
        guard let t = text?.trimmingCharacters(in: .whitespaces), !t.isEmpty, t.lowercased() != "keep" else { return nil }
        return t
    }

    public var rewritesHeader: Bool { mode != nil || frequency != nil || size != nil }

    /// `--flash-mode dio --flash-size 4MB` style text of the options that rewrite headers.
    public var rewriteText: String {
        var parts: [String] = []
        if let mode { parts.append("--flash-mode \(mode)") }
        if let frequency { parts.append("--flash-freq \(frequency)") }
        if let size { parts.append("--flash-size \(size)") }
        return parts.joined(separator: " ")
    }
}

/// Everything that will be written, and how.
public struct FlashPlan: Sendable {
    public var entries: [PlanEntry]
    public var options: FlashOptions
    /// CONFIG_PARTITION_TABLE_OFFSET, when known (default: where a partition table is found).
    public var partitionTableOffset: Int?
    public var sdkconfig: SDKConfig?

    public init(entries: [PlanEntry], options: FlashOptions = FlashOptions(), partitionTableOffset: Int? = nil,
                sdkconfig: SDKConfig? = nil) {
        self.entries = entries.sorted { $0.address < $1.address }
        self.options = options
        self.partitionTableOffset = partitionTableOffset
        self.sdkconfig = sdkconfig
    }

    public func entry(at address: Int) -> PlanEntry? { entries.first { $0.address == address } }
}

/// An ESP-IDF `sdkconfig` (`CONFIG_X=y`, `CONFIG_Y="text"`, `# CONFIG_Z is not set`).
public struct SDKConfig: Sendable, Equatable {
    public var values: [String: String]

    public init(values: [String: String] = [:]) { self.values = values }

    /// Parses the text form (``SDKConfigValues``' rules: the one sdkconfig parser). Never fails.
    public init(text: String) { values = SDKConfigValues.parse(text: text).values }

    /// Parses `build/config/sdkconfig.json` (keys without the `CONFIG_` prefix).
    public init(json: [String: Any]) {
        values = SDKConfigLookup.values(json: json)
    }

    public subscript(_ key: String) -> String? { values[key] }

    public func isEnabled(_ key: String) -> Bool { values[key] == "y" }

    public var secureBootV2: Bool { isEnabled("CONFIG_SECURE_BOOT_V2_ENABLED") }
    public var secureBootV1: Bool { isEnabled("CONFIG_SECURE_BOOT_V1_ENABLED") }
    public var flashEncryption: Bool { isEnabled("CONFIG_SECURE_FLASH_ENC_ENABLED") }
    public var signedBinaries: Bool { isEnabled("CONFIG_SECURE_SIGNED_APPS") || isEnabled("CONFIG_SECURE_BOOT_BUILD_SIGNED_BINARIES") }
    public var partitionTableOffset: Int? { values["CONFIG_PARTITION_TABLE_OFFSET"].flatMap(NumberParsing.integer) }
    /// `CONFIG_ESPTOOLPY_FLASHSIZE` (`"4MB"`).
    public var flashSize: String? { values["CONFIG_ESPTOOLPY_FLASHSIZE"] }
    public var flashMode: String? { values["CONFIG_ESPTOOLPY_FLASHMODE"] }
    public var flashFrequency: String? { values["CONFIG_ESPTOOLPY_FLASHFREQ"] }
    /// Minimum chip revision the build targets (major·100 + minor), e.g. CONFIG_ESP32_REV_MIN_FULL.
    public var minimumRevision: Int? {
        if let full = values["CONFIG_ESP_REV_MIN_FULL"].flatMap(Int.init) { return full }
        if let full = values["CONFIG_ESP32_REV_MIN_FULL"].flatMap(Int.init) { return full }
        if let major = values["CONFIG_ESP32_REV_MIN"].flatMap(Int.init) { return major * 100 }
        return nil
    }
    public var target: String? { values["CONFIG_IDF_TARGET"] }
}

/// Reads an ESP-IDF build directory: `flasher_args.json` says which file goes where and with
/// which flash options; `sdkconfig` (found by `SDKConfigLookup`, the order every build-folder
/// reader shares) says which security features are configured. File access is injected so the parsing
/// stays testable.
public enum BuildDirectory {
    public struct Contents: Sendable {
        public var plan: FlashPlan
        public var chip: String?
        public var sdkconfigPath: String?
    }

    public static func load(_ dir: String, sdkconfigOverride: String? = nil,
                            read: (String) throws -> [UInt8]?) throws -> Contents {
        let argsPath = dir + "/flasher_args.json"
        guard let argsBytes = try read(argsPath) else {
            throw PreflightInputError.missing("no flasher_args.json in \(dir)",
                                              hint: "pass the ESP-IDF build folder (the one `idf.py build` fills), or give ADDR FILE pairs")
        }
        let object: Any
        do { object = try JSONSerialization.jsonObject(with: Data(argsBytes)) } catch {
            throw PreflightInputError.malformed("\(argsPath) is not valid JSON")
        }
        guard let json = object as? [String: Any] else {
            throw PreflightInputError.malformed("\(argsPath) is not a JSON object")
        }
        guard let files = json["flash_files"] as? [String: Any] else {
            throw PreflightInputError.malformed("\(argsPath) has no \"flash_files\" object")
        }
        // Which files are written encrypted ("encrypted": "true" in the per-image objects).
        var encryptedFiles = Set<String>()
        for (_, v) in json {
            if let o = v as? [String: Any], let file = o["file"] as? String,
               let enc = o["encrypted"], "\(enc)".lowercased() == "true" || (enc as? Bool) == true {
                encryptedFiles.insert(file)
            }
        }
        var entries: [PlanEntry] = []
        for (addrText, fileValue) in files {
            guard let address = NumberParsing.integer(addrText), address >= 0 else {
                throw PreflightInputError.malformed("\(argsPath): flash_files key '\(addrText)' is not an address")
            }
            guard let file = fileValue as? String else {
                throw PreflightInputError.malformed("\(argsPath): flash_files[\(addrText)] is not a file name")
            }
            let path = file.hasPrefix("/") ? file : dir + "/" + file
            guard let bytes = try read(path) else {
                throw PreflightInputError.missing("\(path) (listed in flasher_args.json) is missing", hint: "run `idf.py build` again")
            }
            entries.append(PlanEntry(address: address, name: file, bytes: bytes, encrypted: encryptedFiles.contains(file)))
        }
        let settings = json["flash_settings"] as? [String: Any] ?? [:]
        let options = FlashOptions(mode: FlashOptions.value(settings["flash_mode"] as? String),
                                   frequency: FlashOptions.value(settings["flash_freq"] as? String),
                                   size: FlashOptions.value(settings["flash_size"] as? String))
        let extra = json["extra_esptool_args"] as? [String: Any]
        let chip = extra?["chip"] as? String

        var sdk: SDKConfig?
        var sdkPath: String?
        if let override = sdkconfigOverride {
            guard let b = try read(override) else {
                throw PreflightInputError.missing("cannot read sdkconfig \(override)", hint: "check the path")
            }
            sdk = SDKConfig(text: String(decoding: b, as: UTF8.self))
            sdkPath = override
        } else if let found = try SDKConfigLookup.find(read: { try read(dir + "/" + $0) }) {
            // One lookup and one parser for every reader of a build folder (see SDKConfigLookup).
            sdkPath = dir + "/" + found.path
            guard let parsed = found.parsed() else {
                throw PreflightInputError.malformed("\(dir + "/" + found.path) is not a JSON object")
            }
            sdk = SDKConfig(values: parsed.values)
        }
        let plan = FlashPlan(entries: entries, options: options, partitionTableOffset: sdk?.partitionTableOffset, sdkconfig: sdk)
        return Contents(plan: plan, chip: chip ?? sdk?.target, sdkconfigPath: sdkPath)
    }
}
