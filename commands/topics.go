package commands

// The command side's Kafka topics as the contract (asyncapi.yaml) names
// them: the defaults of the processor's and the projector's settings, which
// may rename them.
const (
	TopicCommands    = "prescription.events"       // commands in the seed's format; the projector sends its own here too
	TopicRejections  = "prescription.rejections"   // refused commands, as RefusalMessage
	TopicDeadLetters = "prescription.events.dlq"   // undecodable and poison commands, as DeadLetter
	TopicRetry       = "prescription.events.retry" // keyless commands deferred as premature; only the processor uses it
)
