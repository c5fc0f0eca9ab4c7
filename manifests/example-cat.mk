# A Custom Diffusion run: one concept ("<new1> cat") with 200 real class images retrieved
# from a local index. Run it with: make run MANIFEST=manifests/example-cat.mk
# Outputs go to runs/example-cat/ (candidates, stores, train/delta.safetensors, samples/).

# Base model: a diffusers folder or a single-file .safetensors (then set TOKENIZER).
MODEL           = models/stable-diffusion-v1-5
# TOKENIZER     = models/stable-diffusion-v1-5/tokenizer
# Retrieval: a local index (customdiff-index) queried with this CLIP, or a remote
# clip-retrieval back end (ENDPOINT + INDEX_NAME instead of INDEX).
CLIP            = models/clip-vit-large-patch14
INDEX           = indexes/laion-subset
# ENDPOINT      = http://127.0.0.1:1234/knn-service
# INDEX_NAME    = laion5B-L-14
CLASS_PROMPT    = cat
NUM_CLASS       = 200
INSTANCE_DIR    = data/cat
INSTANCE_PROMPT = photo of a <new1> cat
MODIFIER        = <new1>
INITIALIZER     = ktn
RESOLUTION      = 512
STEPS           = 250
LR              = 1e-5
BATCH           = 2
SEED            = 42
SAMPLE_PROMPT   = <new1> cat swimming in a pool
# On an NVIDIA GPU, bit-for-bit reruns of the training (the attention backward without float
# atomics); the sampler needs only the device:
# TRAIN_FLAGS   = --device cuda --deterministic
# SAMPLE_FLAGS  = --device cuda
