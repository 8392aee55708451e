// Provisions two virtual ESP32s through the library products only (ESPForgeFormats, ESPForgeDevice,
// ESPForgeLine): sign a bootloader and an app, build a partition table, load an identity pool into
// an SQLite registry, run the line, print the registry rows.
// Usage: espforge-example-line FIXTURES_DIR WORK_DIR   (FIXTURES_DIR: Espressif's bootloader, app ELF, test key)
import Foundation
import ImageFormat
import NVS
import Partitions
import Provisioning
import Registry
import SecureBoot
import VirtualDevice

let args = CommandLine.arguments
guard args.count == 3 else { print("usage: espforge-example-line FIXTURES_DIR WORK_DIR"); exit(2) }
let (fixtures, work) = (args[1], args[2])
func read(_ file: String) throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: fixtures + "/" + file))) }

guard case .privateKey(let key) = try KeyMaterial.load(pem: String(decoding: try read("secure/rsa_secure_boot_signing_key.pem"), as: UTF8.self))
else { print("secure/rsa_secure_boot_signing_key.pem is not a private key"); exit(1) }
func sign(_ image: [UInt8]) throws -> [UInt8] { try SecureBootSigner.sign(image: image, keys: [key], append: false, policy: .esp32).image }

let boot = try ImageRetarget.retarget(try read("secure/bootloader_unsigned_v2.bin"), parameters: FlashParameters(size: "4MB"), stripSignature: false)
var app = ImageBuildOptions()
(app.flashMode, app.flashFrequency, app.flashSize, app.securePadV2) = ("dio", "40m", "4MB", true)
let csv = "nvs_key, data, nvs_keys, 0x11000, 0x1000, encrypted\nnvs, data, nvs, 0x12000, 0x20000\nfactory, app, factory, 0x60000, 0x1a0000\n"
let table = try PartitionTableBuild(csv: csv, options: PartitionTableOptions(tableOffset: 0x10000, chip: .esp32, flashSize: 4 << 20)).binary
let identities = try NVSPerDevice.devices(config: try NVSPerDevice.config("key,type,encoding,value\ndevice,namespace,,\nserial_no,data,string,\n"),
                                          values: "id,serial_no\nSN-0001,SN-0001\nSN-0002,SN-0002\n").devices

let job = ProvisioningJob(
    images: [.init(name: "bootloader", offset: 0x1000, bytes: try sign(Array(boot[0..<(try ESPImage(boot)).imageEnd]))),
             .init(name: "partition_table", offset: 0x10000, bytes: table),
             .init(name: "app", offset: 0x60000, bytes: try sign(try ImageBuilder.elf2image(elf: try read("elf/esp32-app-template.elf"), chip: .esp32, options: app)))],
    partitionTableOffset: 0x10000, partitions: try PartitionTable.parse(binary: table).table.entries, mode: .host, release: false,
    manifestHash: String(repeating: "0", count: 64), secureBootDigest: try key.publicKey.keyDigest(),
    identityPool: "example", identities: identities, nvsPartition: "nvs", nvsKeysPartition: "nvs_key", encryptNVS: true,
    finalBurn: ["JTAG_DISABLE"], finalWriteProtect: [], minRevision: 3, flashSize: 4 << 20, station: "example")

var targets: [VirtualTarget] = []
for i in 1...2 {
    let dir = work + "/dev\(i)"
    try DeviceStore(directory: dir).create(try Device.create(DeviceDescription(mac: Device.defaultMAC(seed: UInt64(i)))), force: false)
    targets.append(VirtualTarget(directory: dir))
}
let registry = try await openRegistry(url: work + "/registry.sqlite")
let provisioner = Provisioner(job: job, registry: registry, sdkconfig: .secure(partitionTableOffset: 0x10000))
_ = try await provisioner.loadPool()
for r in await provisioner.provision(all: targets) where !r.ok { print("FAILED \(r.port): \(r.failedStep ?? "") \(r.reason ?? "")") }
for d in try await registry.devices().sorted(by: { $0.mac < $1.mac }) {
    print("\(d.mac) \(d.status.rawValue) \(d.identity ?? "-") secure_boot=\(d.efuseSummary?["ABS_DONE_1"] ?? "?") flash_crypt_cnt=\(d.efuseSummary?["FLASH_CRYPT_CNT"] ?? "?")")
}
try await registry.close()
