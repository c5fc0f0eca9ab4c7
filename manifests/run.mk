# make run MANIFEST=manifests/NAME.mk: a reproducible Custom Diffusion run as file targets.
# The manifest (a Makefile fragment, see manifests/example-cat.mk) defines the concept, the
# class prompt, the retrieval source, counts, seeds and hyper-parameters. Each stage is a
# file target, so a rerun redoes only what changed: edit the training flags and only
# training and sampling run again; the retrieved class store is reused.
RUN_NAME    ?= $(basename $(notdir $(MANIFEST)))
RUN         ?= runs/$(RUN_NAME)
BIN         := $(BUILD)/bin
NUM_CLASS   ?= 200
RESOLUTION  ?= 512
STEPS       ?= 250
LR          ?= 1e-5
BATCH       ?= 2
SEED        ?= 42
MODIFIER    ?= <new1>
INITIALIZER ?= ktn
SAMPLE_STEPS ?= 50
SAMPLE_N    ?= 4
TOKENIZER_FLAG := $(if $(TOKENIZER),--tokenizer "$(TOKENIZER)")
RETRIEVE_SRC := $(if $(INDEX),--index "$(INDEX)" --clip "$(CLIP)",--endpoint "$(ENDPOINT)" --index-name "$(INDEX_NAME)")

.PHONY: run run-clean
run: $(RUN)/samples/grid.png
	@echo "run $(RUN_NAME): samples in $(RUN)/samples, delta $(RUN)/train/delta.safetensors"

$(RUN)/manifest.mk: $(MANIFEST)
	@mkdir -p $(RUN)
	cp $(MANIFEST) $@

$(RUN)/candidates.jsonl: $(RUN)/manifest.mk | $(BIN)/customdiff-retrieve
	$(BIN)/customdiff-retrieve $(RETRIEVE_SRC) --prompt "$(CLASS_PROMPT)" \
	    --num $$(( $(NUM_CLASS) * 3 / 2 )) --out $@ $(RETRIEVE_FLAGS)

$(RUN)/class_store/stats.json: $(RUN)/candidates.jsonl | $(BIN)/customdiff-preprocess
	$(BIN)/customdiff-preprocess --candidates $< --num $(NUM_CLASS) --resolution $(RESOLUTION) \
	    --out $(RUN)/class_store $(PREPROCESS_FLAGS)

$(RUN)/instance_store/stats.json: $(RUN)/manifest.mk $(wildcard $(INSTANCE_DIR)/*) | $(BIN)/customdiff-preprocess
	$(BIN)/customdiff-preprocess --instance "$(INSTANCE_DIR)" --caption "$(INSTANCE_PROMPT)" \
	    --resolution $(RESOLUTION) --out $(RUN)/instance_store

$(RUN)/train/delta.safetensors: $(RUN)/instance_store/stats.json $(RUN)/class_store/stats.json | $(BIN)/customdiff-train
	$(BIN)/customdiff-train --model "$(MODEL)" $(TOKENIZER_FLAG) \
	    --instance-data $(RUN)/instance_store --class-data $(RUN)/class_store \
	    --instance-prompt "$(INSTANCE_PROMPT)" --class-prompt "$(CLASS_PROMPT)" \
	    --modifier-token "$(MODIFIER)" --initializer-token "$(INITIALIZER)" \
	    --with-prior-preservation --real-prior --num-class-images $(NUM_CLASS) \
	    --resolution $(RESOLUTION) --train-batch-size $(BATCH) --learning-rate $(LR) --scale-lr \
	    --max-train-steps $(STEPS) --seed $(SEED) --hflip --overwrite --out $(RUN)/train $(TRAIN_FLAGS)

$(RUN)/samples/grid.png: $(RUN)/train/delta.safetensors | $(BIN)/customdiff-sample
	$(BIN)/customdiff-sample --model "$(MODEL)" $(TOKENIZER_FLAG) --delta $< \
	    --prompt "$(SAMPLE_PROMPT)" --n $(SAMPLE_N) --steps $(SAMPLE_STEPS) --seed $(SEED) \
	    --out $(RUN)/samples $(SAMPLE_FLAGS)

run-clean:
	rm -rf $(RUN)
