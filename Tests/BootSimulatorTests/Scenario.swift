import BootSimulator
import Crypto
import EFuse
import ESPCore
import Foundation
import ImageFormat
import Partitions
import SecureBoot
import TestSupport
import VirtualDevice

/// Builds flash contents from the real Espressif images (bootloader fixture, app ELF fixture).
enum Scenario {
    static let keyA: SigningKey = try! SigningKey.generate(.rsa3072)
    static let keyB: SigningKey = try! SigningKey.generate(.rsa3072)

    /// The real ESP32 rev 3 bootloader, retargeted to `size`, signed with `key`.
    static func signedBootloader(size: String = "4MB", key: SigningKey = keyA) throws -> [UInt8] {
        try Scenarios.signedBootloader(size: size, key: key)
    }

    /// What the seed's flashing step left: the bootloader built and signed for 8MB, then its
    /// header byte 3 rewritten to 4MB after signing. `fixDigest` = recompute the appended
    /// SHA-256 over the rewritten image (current esptool); false = the digest stays as signed
    /// (what the seed log shows: "Image hash failed").
    static func seedBootloader(fixDigest: Bool) throws -> [UInt8] {
        try Scenarios.seedBootloader(key: keyA, rehash: fixDigest)
    }

    static func app(key: SigningKey = keyA) throws -> [UInt8] { try Scenarios.app(key: key) }

    static func blankDevice(flashSize: Int = 4 << 20) throws -> Device {
        try Device.create(DeviceDescription(mac: "24:0a:c4:00:00:01", flashSize: flashSize))
    }

    static func write(_ device: inout Device, _ address: Int, _ data: [UInt8]) {
        _ = device.flash.eraseSectors(address, data.count, timing: .w25q32jv)
        _ = device.flash.program(address, data, timing: .w25q32jv)
    }

    /// A device flashed like the seed: bootloader, table at 0x10000, signed app in ota_0 and
    /// ota_1, otadata erased, a few bytes in nvs_key and nvs.
    static func seedDevice(bootloader: [UInt8], app: [UInt8]) throws -> Device {
        var d = try blankDevice()
        write(&d, 0x1000, bootloader)
        write(&d, 0x10000, try Scenarios.table())
        write(&d, 0x60000, app)
        write(&d, 0x210000, app)
        write(&d, 0x11000, [UInt8](repeating: 0x5A, count: 64))
        write(&d, 0x12000, [UInt8](repeating: 0x33, count: 64))
        return d
    }

    static var seedConfig: BootConfig {
        var c = BootConfig(sdkconfig: .secure(release: false, partitionTableOffset: 0x10000))
        c.strapping = 0x1E
        c.idfVersion = "v4.4"
        c.compileTime = "14:43:01"
        c.rngSeed = 7
        return c
    }

    /// Lines of a log normalized for comparison: timestamps dropped, whitespace collapsed,
    /// image-dependent values (segment lines, ROM load lines, entry) reduced to their kind,
    /// runs of segment lines folded, monitor annotations and blank lines removed.
    static func normalize(_ lines: [String]) -> [String] {
        var out: [String] = []
        for raw in lines {
            var l = raw.split(whereSeparator: { $0 == " " || $0 == "\t" }).joined(separator: " ")
            if l.isEmpty || l.hasPrefix("ho ") || l.hasPrefix("0x") { continue }
            if let r = l.range(of: #"^([IWE]) \(\d+\) "#, options: .regularExpression) {
                l = String(l[l.startIndex]) + " " + l[r.upperBound...]
            }
            if l.hasPrefix("load:") { l = "load:" }
            if l.hasPrefix("entry ") { l = "entry" }
            if l.contains("esp_image: segment ") { l = "I esp_image: segment" }
            if l == "I esp_image: segment" || l == "load:", out.last == l { continue }
            out.append(l)
        }
        return out
    }
}

